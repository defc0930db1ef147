const fs = require("fs");
const http = require("http");
const body = fs.readFileSync(__dirname + "/dist/built.txt");
http.createServer((req, res) => res.end(body)).listen(process.env.PORT || 5000);
