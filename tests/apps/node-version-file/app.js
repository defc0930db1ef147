// A pinned Node.js: .node-version says 20.17.0 and engines.node agrees (20.17.x).
const http = require("http");

const server = http.createServer((req, res) => {
  res.writeHead(200, { "Content-Type": "text/plain" });
  res.end(process.version);
});
server.listen(Number(process.env.PORT) || 5000);
