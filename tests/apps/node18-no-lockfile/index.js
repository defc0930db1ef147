// Answers with the Node.js version it runs on, so a test can see which base image it got.
const http = require("http");

http.createServer((req, res) => {
  res.setHeader("Content-Type", "text/plain");
  res.end(process.version);
}).listen(process.env.PORT || 5000);
