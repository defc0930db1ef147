// minipaas dashboard: follows a log as server-sent events (the one script; no inline script anywhere).
// The page holds the lines there were; the stream appends what comes. A push's stream ends with `end`
// (then the browser stops reconnecting) and says `reset` when a new push starts its log anew.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const log = document.getElementById("log");
  const state = document.getElementById("log-state");
  if (!log || !log.dataset.stream || !window.EventSource) return;
  if (state && state.textContent === "finished") return;
  const say = (text) => { if (state) state.textContent = text; };
  const source = new EventSource(log.dataset.stream);
  const atBottom = () => log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
  source.onopen = () => say("following");
  source.onmessage = (event) => {
    const follow = atBottom();
    log.appendChild(document.createTextNode(event.data + "\n"));
    if (follow) log.scrollTop = log.scrollHeight;
  };
  source.addEventListener("problem", (event) => say(event.data));
  source.addEventListener("reset", () => { log.textContent = ""; });
  source.addEventListener("end", () => { source.close(); say("finished"); });
  source.onerror = () => { if (source.readyState !== EventSource.CLOSED) say("reconnecting…"); };
});
