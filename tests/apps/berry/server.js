// Answers with what only the installed dependencies can produce, and whether the devDependency is gone.
import { createServer } from "node:http";
import { existsSync, readFileSync } from "node:fs";
import ms from "ms";

let dev = "pruned";
try {
  await import("is-number");
  dev = "present";
} catch {}
const linker = existsSync(".pnp.cjs") ? "pnp" : existsSync("node_modules/ms") ? "node-modules" : "none";
const server = createServer((req, res) => {
  res.end(`berry ${linker}: 60000 ms is ${ms(60000)}; ${readFileSync("dist/built.txt", "utf8")}; devDependency ${dev}\n`);
});
server.listen(process.env.PORT || 5000);
process.on("SIGTERM", () => server.close(() => process.exit(0)));
