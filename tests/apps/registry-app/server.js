// Answers with the values of whatever packages package.json depends on (packages the test's registry made).
const http = require("http");
const names = Object.keys(require("./package.json").dependencies || {}).sort();

const server = http.createServer((req, res) => res.end(`${names.map((name) => require(name)).join(" ")}\n`));
server.listen(process.env.PORT || 5000);
process.on("SIGTERM", () => server.close(() => process.exit(0)));
