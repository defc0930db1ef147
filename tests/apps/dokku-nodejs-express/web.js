// Answers what dokku's check_deploy expects, and the health check endpoint's config value.
const express = require("express");

const app = express();
app.get("/", (request, response) => response.send("nodejs/express"));
app.get("/healthcheck", (request, response) => response.send(process.env.HEALTHCHECK_ENDPOINT || "unset"));
app.get("/version", (request, response) => response.send(process.version));

const port = process.env.PORT || 5000;
app.listen(port, () => console.log(`Listening on ${port}`));
