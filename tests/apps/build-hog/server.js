const http = require("http");
const { mode } = require("./hog.json");
http.createServer((req, res) => res.end(`built in mode ${mode}\n`)).listen(process.env.PORT || 5000);
