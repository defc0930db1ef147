// Compiled by tsc at start.
declare const require: (name: string) => any;
declare const process: { env: Record<string, string | undefined> };
const http = require("http");
const greeting: string = "compiled at start";
http.createServer((req: unknown, res: { end: (body: string) => void }) => res.end(`${greeting}\n`))
  .listen(Number(process.env.PORT || 5000));
