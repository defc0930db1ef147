console.log("never runs")
