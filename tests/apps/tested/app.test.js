// The app's tests: they need the devDependency is-number and CI=true, and write test-output.txt, which
// must stay in the build's test stage.
const test = require("node:test");
const assert = require("node:assert");
const fs = require("node:fs");
const isNumber = require("is-number");

test("the answer is a number", () => {
  fs.writeFileSync("test-output.txt", `ran with CI=${process.env.CI}\n`);
  assert.strictEqual(process.env.CI, "true");
  assert.ok(isNumber(42));
});
