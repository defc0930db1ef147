// A process type that idles (scaled to 0 by default).
function tick() {
  console.log("worker tick");
  setTimeout(tick, 60 * 1000);
}
tick();
