// The app's own test (npm test), as getting-started apps have one.
const assert = require("assert");
assert.strictEqual([0, 1, 2].join(" "), "0 1 2");
console.log("ok");
