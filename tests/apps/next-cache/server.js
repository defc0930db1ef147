// Like `next start`: writes optimised images under .next/cache/images at run time.
const fs = require("fs");
const http = require("http");

const server = http.createServer((req, res) => {
  fs.mkdirSync(".next/cache/images", { recursive: true });
  fs.writeFileSync(".next/cache/images/hero.webp", "not really an image");
  res.end(`images cached; ${fs.readFileSync(".next/server/info.txt", "utf8")}`);
});
server.listen(process.env.PORT || 5000);
process.on("SIGTERM", () => server.close(() => process.exit(0)));
