// minipaas dashboard: follows a log as server-sent events (the one script; no inline script anywhere).
// The page holds the lines there were; the stream appends what comes. A push's stream ends with `end`
// (then the browser stops reconnecting) and says `reset` when a new push starts its log anew.
// A dropped stream is picked up where it was: the browser's own retry sends the last event's id
// (Last-Event-ID); when that retry is refused (nginx's 503 while the dashboard restarts), the browser gives
// up, so a new stream is opened a little later with that id as `?after=`.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const log = document.getElementById("log");
  const state = document.getElementById("log-state");
  if (!log || !log.dataset.stream || !window.EventSource) return;
  if (state && state.textContent === "finished") return;
  const say = (text) => { if (state) state.textContent = text; };
  const atBottom = () => log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
  const path = log.dataset.stream.split("?")[0];
  let last = null;
  let ended = false;
  const open = (url) => {
    const source = new EventSource(url);
    source.onopen = () => say("following");
    source.onmessage = (event) => {
      if (event.lastEventId) last = event.lastEventId;
      const follow = atBottom();
      log.appendChild(document.createTextNode(event.data + "\n"));
      if (follow) log.scrollTop = log.scrollHeight;
    };
    source.addEventListener("problem", (event) => say(event.data));
    source.addEventListener("reset", () => { log.textContent = ""; });
    source.addEventListener("end", () => { ended = true; source.close(); say("finished"); });
    source.onerror = () => {
      if (ended) return;
      say("reconnecting…");
      if (source.readyState === EventSource.CLOSED) {
        setTimeout(() => open(last === null ? log.dataset.stream : path + "?after=" + encodeURIComponent(last)), 2000);
      }
    };
  };
  open(log.dataset.stream);
});
