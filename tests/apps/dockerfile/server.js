const http = require("http");
http.createServer((req, res) => res.end("from my own Dockerfile\n")).listen(process.env.PORT || 5000);
