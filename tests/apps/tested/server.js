// Answers with its greeting, and which of its dependencies it has (ms, and is-number: a devDependency).
const http = require("http");
const greeting = "tested v1";

function has(name) {
  try { require.resolve(name); return "yes"; } catch { return "no"; }
}

const server = http.createServer((req, res) => res.end(`${greeting}; ms: ${has("ms")}; is-number: ${has("is-number")}\n`));
server.listen(process.env.PORT || 5000);
process.on("SIGTERM", () => server.close(() => process.exit(0)));
