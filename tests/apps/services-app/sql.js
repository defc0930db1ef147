// SQL from the app's own container with its own credentials, for the tests (`minipaas run APP -- node sql.js
// STATEMENT...`): each argument runs in a session of its own, through DATABASE_URL (or the URL given with
// `--url URL` first), and prints one JSON line: {"ok": true, "rows": [...]} (the last statement's rows) or
// {"ok": false, "code": SQLSTATE, "error": message}.
const { Client } = require("pg");

(async () => {
  const args = process.argv.slice(2);
  let url = process.env.DATABASE_URL;
  if (args[0] === "--url") { url = args[1]; args.splice(0, 2); }
  for (const sql of args) {
    const client = new Client({ connectionString: url });
    try {
      await client.connect();
      const result = await client.query(sql);
      const last = Array.isArray(result) ? result[result.length - 1] : result;
      console.log(JSON.stringify({ ok: true, rows: last.rows || [] }));
    } catch (err) {
      console.log(JSON.stringify({ ok: false, code: err.code || "", error: String(err.message || err) }));
    } finally {
      await client.end().catch(() => {});
    }
  }
})();
