// Serves until asked to crash: then it says so and exits with code 3 (the crash tests' fixture).
const http = require("http");

http.createServer((req, res) => {
  if (req.url === "/crash") {
    console.log("about to crash on purpose");
    res.end("bye\n", () => process.exit(3));
    return;
  }
  res.end(`${process.env.NEEDED ? "needed: " + process.env.NEEDED : "up"}\n`);
}).listen(process.env.PORT || 5000);
