// Shows the build's steps.log.
const fs = require("fs");
const http = require("http");

const server = http.createServer((req, res) => res.end(fs.readFileSync("steps.log")));
server.listen(process.env.PORT || 5000);
process.on("SIGTERM", () => server.close(() => process.exit(0)));
