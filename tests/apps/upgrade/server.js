const http = require("http");
const server = http.createServer((req, res) => res.end("plain http\n"));
server.on("upgrade", (req, socket) => {
  socket.write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n");
  socket.on("data", (chunk) => socket.write(chunk));
});
server.listen(process.env.PORT || 5000);
