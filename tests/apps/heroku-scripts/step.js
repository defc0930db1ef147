// Appends "<step> (devDependency present|pruned)" to steps.log: the order and what each step saw.
const fs = require("fs");

let dev = "pruned";
try {
  require.resolve("is-number");
  dev = "present";
} catch {}
fs.appendFileSync("steps.log", `${process.argv[2]} (devDependency ${dev})\n`);
