// minipaas dashboard: follows a log as server-sent events (the one script; no inline script anywhere).
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const log = document.getElementById("log");
  const state = document.getElementById("log-state");
  if (!log || !log.dataset.stream || !window.EventSource) return;
  const source = new EventSource(log.dataset.stream);
  const atBottom = () => log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
  source.onopen = () => { if (state) state.textContent = "following"; };
  source.onmessage = (event) => {
    const follow = atBottom();
    log.appendChild(document.createTextNode(event.data + "\n"));
    if (follow) log.scrollTop = log.scrollHeight;
  };
  source.addEventListener("problem", (event) => { if (state) state.textContent = event.data; });
  source.onerror = () => { if (state) state.textContent = "reconnecting…"; };
});
