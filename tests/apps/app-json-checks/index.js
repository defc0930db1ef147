// Answers / with ROOT_STATUS (default 404, like dokku's checks-root app) and /health with "ok".
const http = require("http");

http.createServer((req, res) => {
  if (req.url === "/health") return res.end("ok from app-json-checks\n");
  res.statusCode = Number(process.env.ROOT_STATUS || 404);
  res.end(`root answers ${res.statusCode}\n`);
}).listen(process.env.PORT || 5000, () => console.log("listening"));
