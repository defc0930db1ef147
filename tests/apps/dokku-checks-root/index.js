// / answers 404 (so dokku's startup check of / fails the deploy), unless ROOT_STATUS says otherwise.
const http = require("http");

http.createServer((request, response) => {
  response.statusCode = request.url === "/" ? Number(process.env.ROOT_STATUS || 404) : 404;
  response.end(`node ${process.version}\n`);
}).listen(process.env.PORT || 5000, () => console.log("Listening"));
