// "Compiles" a server into dist/: no index.html, so there is no site to serve.
const fs = require("fs");
fs.mkdirSync("dist", { recursive: true });
fs.writeFileSync("dist/server.js", 'require("http").createServer((q, s) => s.end("api")).listen(process.env.PORT);\n');
