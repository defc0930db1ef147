// Express with EJS pages and the public/ folder, as a getting-started app lays them out.
const express = require("express");
const path = require("path");

const PORT = process.env.PORT || 5001;

express()
  .use(express.static(path.join(__dirname, "public")))
  .set("views", path.join(__dirname, "views"))
  .set("view engine", "ejs")
  .get("/", (req, res) => res.render("pages/index", { node: process.version }))
  .get("/times", (req, res) => res.send(Array.from({ length: Number(process.env.TIMES || 5) }, (_, i) => i).join(" ")))
  .listen(PORT, () => console.log(`Listening on ${PORT}`));
