// The build step: needs a devDependency, writes an artefact the server then serves.
const fs = require("fs");
const isNumber = require("is-number");
fs.mkdirSync("dist", { recursive: true });
fs.writeFileSync("dist/built.txt", `built with a dev dependency: ${isNumber(42)}\n`);
