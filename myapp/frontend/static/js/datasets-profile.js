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
          x: { ticks: { maxTicksLimit: 4, maxRotation: 0 }, grid: { display: false } },
          y: { beginAtZero: true, ticks: { maxTicksLimit: 4, precision: 0 } }
        }
      }
    });
  });
})();
