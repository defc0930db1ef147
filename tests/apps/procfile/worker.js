console.log("worker started");
setInterval(() => console.log("worker tick"), 1000);
