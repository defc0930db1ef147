// Creates /app/uploads at boot and writes into it and into $HOME; answers with what it managed.
const fs = require("fs");
const os = require("os");
const path = require("path");
const http = require("http");

fs.mkdirSync(path.join(__dirname, "uploads"), { recursive: true });
fs.writeFileSync(path.join(__dirname, "uploads", "boot.txt"), "written at boot\n");
fs.writeFileSync(path.join(os.homedir(), ".uploads-home-test"), "ok\n");
const server = http.createServer((req, res) => {
  res.end(`uploads: ${fs.readFileSync(path.join(__dirname, "uploads", "boot.txt"), "utf8").trim()}; home: ${os.homedir()}\n`);
});
server.listen(process.env.PORT || 5000);
process.on("SIGTERM", () => server.close(() => process.exit(0)));
