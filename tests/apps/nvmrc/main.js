// No engines.node: the Node.js version comes from .nvmrc.
require("http")
  .createServer((req, res) => res.end(process.version))
  .listen(process.env.PORT || 5000);
