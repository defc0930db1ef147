// The minipaas example app: answers with GREETING (set with `minipaas config:set`).
const express = require("express");

const app = express();
app.use(express.text({ type: "*/*", limit: "1mb" }));

app.get("/", (req, res) => {
  res.send(`${process.env.GREETING || "Hello"} from minipaas (${process.env.RELEASE_NOTE || "node " + process.version})\n`);
});

app.post("/echo", (req, res) => {
  res.type("text/plain").send(req.body || "");
});

app.get("/env/:key", (req, res) => {
  const value = process.env[req.params.key];
  if (value === undefined) return res.status(404).send("unset\n");
  res.type("text/plain").send(value);
});

const port = process.env.PORT || 5000;
const server = app.listen(port, () => console.log(`listening on ${port}`));

// Finish in-flight requests on SIGTERM, as a well-behaved app does when minipaas retires it.
process.on("SIGTERM", () => server.close(() => process.exit(0)));
