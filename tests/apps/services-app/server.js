// Rows in Postgres, keys in Redis: POST /write adds one of each; GET /count says how many there are.
// GET / answers without either (the health check passes before any link).
const http = require("http");
const net = require("net");
const { Pool } = require("pg");

const pool = process.env.DATABASE_URL ? new Pool({ connectionString: process.env.DATABASE_URL, max: 2 }) : null;
let ready = null;

function table() {
  if (!ready) ready = pool.query("CREATE TABLE IF NOT EXISTS items (id serial PRIMARY KEY, note text NOT NULL)");
  return ready;
}

// A Redis command over one connection: AUTH from REDIS_URL, then the command; the last reply is returned.
function redis(args) {
  const url = new URL(process.env.REDIS_URL);
  const commands = [];
  if (url.password) commands.push(["AUTH", decodeURIComponent(url.password)]);
  if (url.pathname.length > 1) commands.push(["SELECT", url.pathname.slice(1)]);  // a review app's own database
  commands.push(args);
  const wire = commands.map((c) => `*${c.length}\r\n` + c.map((a) => `$${Buffer.byteLength(String(a))}\r\n${a}\r\n`).join("")).join("");
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(url.port || 6379), url.hostname);
    let data = "";
    const replies = [];
    socket.setTimeout(5000, () => { socket.destroy(); reject(new Error("redis timeout")); });
    socket.on("error", reject);
    socket.on("data", (chunk) => {
      data += chunk.toString();
      let match;
      while ((match = /^([+\-:])([^\r]*)\r\n|^\$(-?\d+)\r\n/.exec(data))) {
        if (match[1]) {
          replies.push(match[1] === "-" ? new Error(match[2]) : match[1] === ":" ? Number(match[2]) : match[2]);
          data = data.slice(match[0].length);
        } else {
          const len = Number(match[3]);
          if (len < 0) { replies.push(null); data = data.slice(match[0].length); continue; }
          if (data.length < match[0].length + len + 2) break;
          replies.push(data.slice(match[0].length, match[0].length + len));
          data = data.slice(match[0].length + len + 2);
        }
      }
      if (replies.length === commands.length) {
        socket.end();
        const last = replies[replies.length - 1];
        const failed = replies.find((r) => r instanceof Error);
        failed ? reject(failed) : resolve(last);
      }
    });
    socket.write(wire);
  });
}

const server = http.createServer(async (req, res) => {
  const reply = (status, body) => { res.writeHead(status, { "Content-Type": "application/json" }); res.end(JSON.stringify(body)); };
  try {
    if (req.url === "/") return reply(200, { ok: true });
    if (req.url === "/env") return reply(200, { database: !!process.env.DATABASE_URL, redis: !!process.env.REDIS_URL });
    if (req.url.startsWith("/write") && req.method === "POST") {
      const out = {};
      if (pool) { await table(); out.row = (await pool.query("INSERT INTO items (note) VALUES ($1) RETURNING id", [req.url])).rows[0].id; }
      if (process.env.REDIS_URL) { out.key = await redis(["INCR", "writes"]); }
      return reply(200, out);
    }
    if (req.url === "/count") {
      const out = {};
      if (pool) { await table(); out.rows = Number((await pool.query("SELECT count(*) AS n FROM items")).rows[0].n); }
      if (process.env.REDIS_URL) { out.keys = Number((await redis(["GET", "writes"])) || 0); }
      return reply(200, out);
    }
    reply(404, { error: "not found" });
  } catch (err) {
    reply(503, { error: String(err.message || err) });
  }
});
server.listen(process.env.PORT || 5000);
