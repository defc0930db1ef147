const http = require("http");
const os = require("os");
http.createServer((req, res) => res.end(`web ${process.env.VERSION || "v1"} on ${os.hostname()}\n`))
  .listen(process.env.PORT || 5000);
