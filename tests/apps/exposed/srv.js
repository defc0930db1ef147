require("http").createServer((q, r) => r.end("on port 3000\n")).listen(3000);
