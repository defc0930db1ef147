// Answers with what only the installed production dependency can produce, and whether the devDependency is gone.
const http = require("http");
const ms = require("ms");

let dev = "pruned";
try {
  require.resolve("is-number");
  dev = "present";
} catch {}
const server = http.createServer((req, res) => res.end(`npm app: 60000 ms is ${ms(60000)}; devDependency ${dev}\n`));
server.listen(process.env.PORT || 5000);
process.on("SIGTERM", () => server.close(() => process.exit(0)));
