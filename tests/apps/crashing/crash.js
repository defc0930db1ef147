console.log("starting, then failing on purpose");
console.error("Error: boom (the crashing fixture)");
process.exit(3);
