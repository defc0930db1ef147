// Like `next build`: reads the previous builds' cache, writes the app's build output and the cache.
const fs = require("fs");

fs.mkdirSync(".next/cache", { recursive: true });
const counter = ".next/cache/builds";
const previous = fs.existsSync(counter) ? Number(fs.readFileSync(counter, "utf8")) : 0;
fs.writeFileSync(counter, String(previous + 1));
fs.mkdirSync(".next/server", { recursive: true });
fs.writeFileSync(".next/server/info.txt", `earlier builds in the cache: ${previous}\n`);
