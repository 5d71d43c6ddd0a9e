// The analytics page's charts: Chart.js (chart.umd.min.js, beside this file) draws each
// canvas[data-chart] from the description the page carries (insights_pages.py builds it from
// the figures of the table under the chart). Colours are chosen here, nothing else.
(function () {
  if (!window.Chart) { return; }
  var palette = ["#c2577a", "#e9b3c4", "#7a3047", "#d98ba5", "#f3e6ea", "#9c6b7c", "#5b2236", "#b0a29f"];

  function tick(unit) {
    return function (value) { return unit === "¥" ? "¥" + value : value + unit; };
  }

  function options(spec) {
    var drawn = { animation: false, responsive: true };
    if (spec.type === "doughnut") { return drawn; }
    var axis = spec.horizontal ? "x" : "y";
    drawn.indexAxis = spec.horizontal ? "y" : "x";
    drawn.scales = {};
    drawn.scales[axis] = { beginAtZero: true, ticks: { callback: tick(spec.unit || "") } };
    return drawn;
  }

  document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
    var spec = JSON.parse(canvas.dataset.chart);
    var round = spec.type === "doughnut";
    var datasets = spec.datasets.map(function (d, i) {
      return { label: d.label, data: d.data, backgroundColor: round ? palette : palette[i % palette.length] };
    });
    new window.Chart(canvas, { type: spec.type, data: { labels: spec.labels, datasets: datasets }, options: options(spec) });
    canvas.dataset.drawn = "true";
  });
})();
