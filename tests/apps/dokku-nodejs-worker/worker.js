// A worker and nothing else, on an old Node: it says which, then ticks.
var started = new Date().toISOString();
console.log("worker on node " + process.version + " started " + started);
setInterval(function () { console.log("tick"); }, 1000);
