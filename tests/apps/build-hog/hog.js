// Run as a build step. Every mode is bounded, so that a limit that fails to apply cannot hurt the host.
const { spawn } = require("child_process");
const { mode } = require("./hog.json");
if (mode === "memory") {
  // 256 MiB, every page written: far beyond a 64m build-memory.
  const blocks = [];
  for (let i = 0; i < 16; i++) blocks.push(Buffer.alloc(16 * 1024 * 1024, 1));
  console.log(`hog: holding ${blocks.length * 16} MiB`);
} else if (mode === "pids") {
  // 200 short-lived children at once: far beyond a build-pids of 32, harmless without one.
  let failed = 0, left = 200;
  const done = () => { if (--left === 0) { console.log(`hog: ${failed} spawns refused`); process.exit(failed ? 1 : 0); } };
  for (let i = 0; i < 200; i++) {
    const child = spawn("sleep", ["3"]);
    child.on("error", () => { failed++; done(); });
    child.on("exit", () => { if (child.pid) done(); });
  }
} else if (mode === "sleep") {
  console.log("hog: sleeping for 120 s");
  setTimeout(() => console.log("hog: woke up"), 120 * 1000);
} else {
  console.log("hog: nothing to do");
}
