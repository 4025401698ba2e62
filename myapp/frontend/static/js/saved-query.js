/* A saved query's page: draws its saved chart from the same parameters as the results above,
   and offers the chart as a PNG. The results themselves are rendered by the server. */
import { postJSON } from "./http.js";

(function () {
  "use strict";

  var source = document.getElementById("chart-config");
  if (!source) { return; }
  var config = JSON.parse(source.textContent);
  var canvas = document.getElementById("chart-canvas");
  var note = document.getElementById("chart-note");
  var png = document.getElementById("chart-png");

  note.textContent = "Drawing the chart…";
  postJSON(config.url, { params: config.params, version: config.version })
    .then(function (answer) {
      if (!answer.ok) {
        note.textContent = "The chart could not be drawn: " + answer.body.error.message;
        return;
      }
      var chart = window.MyappChart.render(canvas, answer.body, config.chart);
      note.textContent = window.MyappChart.note(answer.body);
      png.href = window.MyappChart.png(chart);
      png.hidden = false;
    })
    .catch(function () { note.textContent = "The chart could not be drawn; reload the page to try again."; });
})();
