// The profile page: one small bar chart per histogram, drawn by the vendored Chart.js from the
// JSON block the server rendered (each chart also has a table version on the page).
(function () {
  "use strict";
  var source = document.getElementById("histograms");
  if (!source || typeof Chart === "undefined") {
    return;
  }
  var charts = JSON.parse(source.textContent);
  var style = getComputedStyle(document.body);
  var color = style.getPropertyValue("--pico-primary").trim() || "#0172ad";
  // Ticks and grid in the page's colours, so the charts read in dark mode as well.
  var text = style.color;
  var grid = style.getPropertyValue("--pico-muted-border-color").trim() || "rgba(128,128,128,.3)";
  Object.keys(charts).forEach(function (id) {
    var canvas = document.getElementById(id);
    if (!canvas) {
      return;
    }
    var data = charts[id];
    new Chart(canvas, {
      type: "bar",
      data: {
        labels: data.labels,
        datasets: [{ label: data.label, data: data.counts, backgroundColor: color, barPercentage: 1.0, categoryPercentage: 1.0 }]
      },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        plugins: { legend: { display: false } },
        scales: {
          x: { ticks: { maxTicksLimit: 4, maxRotation: 0, color: text }, grid: { display: false }, border: { color: grid } },
          y: { beginAtZero: true, ticks: { maxTicksLimit: 4, precision: 0, color: text }, grid: { color: grid }, border: { color: grid } }
        }
      }
    });
  });
})();
