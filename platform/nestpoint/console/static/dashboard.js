// Sales by hour of day on the dashboard: Chart.js (chart.umd.min.js, beside this file)
// draws the figures the page's table holds (data-hours on the canvas).
(function () {
  var canvas = document.getElementById("hourly-chart");
  if (!canvas || !window.Chart) { return; }
  var data = JSON.parse(canvas.dataset.hours);
  new window.Chart(canvas, {
    type: "bar",
    data: {
      labels: data.labels,
      datasets: [
        { label: data.weekday, data: data.weekdayYuan, backgroundColor: "#c2577a" },
        { label: data.weekend, data: data.weekendYuan, backgroundColor: "#e9b3c4" }
      ]
    },
    options: { animation: false, responsive: true, scales: { y: { beginAtZero: true } } }
  });
  canvas.dataset.drawn = "true";
})();
