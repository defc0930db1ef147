// A worker that only stays alive.
setInterval(() => console.log("worker tick"), 60_000);
