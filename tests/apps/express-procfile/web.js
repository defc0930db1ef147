// An Express app answering on $PORT; says whether the release command's file is in its /app.
const express = require("express");
const fs = require("fs");

const app = express();
app.get("/", (req, res) => res.type("text").send("express fixture\n"));
app.get("/release-file", (req, res) => res.type("text").send(`${fs.existsSync("/app/release.test")}\n`));
const server = app.listen(process.env.PORT || 5000, () => console.log("express fixture listening"));
process.on("SIGTERM", () => server.close(() => process.exit(0)));
