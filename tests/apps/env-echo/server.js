const http = require("http");
http.createServer((req, res) => res.end("v1 " + (process.env.GREETING || "") + "\n")).listen(process.env.PORT || 5000);
