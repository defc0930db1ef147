// The pnpm fixture: answers GET / with a text that only a loaded production dependency (ms) can produce.
const http = require("http");
const ms = require("ms");

const port = process.env.PORT || 5000;
const server = http.createServer((req, res) => {
  res.writeHead(200, { "Content-Type": "text/plain; charset=utf-8" });
  res.end(`pnpm app: 60000 ms is ${ms(60000)}\n`);
});
server.listen(port, () => console.log(`listening on ${port}`));
process.on("SIGTERM", () => server.close(() => process.exit(0)));
