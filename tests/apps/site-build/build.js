// A tiny static-site generator: writes dist/index.html at build time.
const fs = require("fs");
fs.mkdirSync("dist", { recursive: true });
fs.writeFileSync("dist/index.html", "<!doctype html><title>Built</title><h1>built at build time</h1>\n");
