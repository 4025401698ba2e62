/* The chart panel of a result: columns to choose from, a suggestion (or the saved query's
   chart), and drawing through the page's chart endpoint (chart-panel.js draws). */
import { $, state, urls } from "./state.js";
import { postJSON } from "../http.js";

const chartPanel = $("chart-panel");
const chartCanvas = $("chart-canvas");
const pngLink = $("chart-png");

function option(select, value, text, selected) {
  const o = document.createElement("option");
  o.value = value;
  o.textContent = text;
  o.selected = Boolean(selected);
  select.appendChild(o);
}

export function prepareChart(columns) {
  const saved = state.saved;
  let wanted = (saved && saved.chart && columnsFit(saved.chart, columns)) ? saved.chart : window.MyappChart.suggest(columns);
  if (state.chartState && columnsFit(state.chartState.config, columns)) { wanted = state.chartState.config; }
  const x = $("chart-x");
  const series = $("chart-series");
  const y = $("chart-y");
  x.textContent = "";
  series.textContent = "";
  y.querySelectorAll("label").forEach(function (l) { l.remove(); });
  option(series, "", "(none)", !wanted || !wanted.series);
  columns.forEach(function (c) {
    option(x, c.name, c.name + " (" + c.type + ")", wanted && wanted.x === c.name);
    option(series, c.name, c.name, wanted && wanted.series === c.name);
  });
  const numeric = columns.filter(function (c) { return window.MyappChart.isNumeric(c.type); });
  numeric.forEach(function (c) {
    const l = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.name = "y";
    box.value = c.name;
    box.checked = Boolean(wanted && wanted.y.indexOf(c.name) >= 0);
    l.appendChild(box);
    l.appendChild(document.createTextNode(" " + c.name));
    y.appendChild(l);
  });
  if (wanted) { $("chart-type").value = wanted.type; }
  $("chart-note").textContent = numeric.length ? "" : "A chart needs at least one number column.";
  if (chartPanel.open && wanted && numeric.length) { drawChart(); }
}

function columnsFit(chart, columns) {
  const names = columns.map(function (c) { return c.name; });
  return [chart.x].concat(chart.y, chart.series ? [chart.series] : []).every(function (n) {
    return names.indexOf(n) >= 0;
  });
}

function chartConfig() {
  const ys = Array.prototype.map.call(
    $("chart-y").querySelectorAll("input:checked"), function (b) { return b.value; });
  return {
    type: $("chart-type").value,
    x: $("chart-x").value,
    y: ys,
    series: $("chart-series").value || null
  };
}

export function drawChart() {
  const lastRun = state.lastRun;
  if (!lastRun) { return; }
  const wanted = chartConfig();
  const note = $("chart-note");
  if (!wanted.y.length) {
    note.textContent = "Choose at least one number column for the y axis.";
    return;
  }
  note.textContent = "Drawing…";
  postJSON(urls.chart, { sql: lastRun.sql, params: lastRun.params, chart: wanted })
    .then(function (answer) {
      if (!answer.ok) {
        note.textContent = answer.body.error.message;
        return;
      }
      const chart = window.MyappChart.render(chartCanvas, answer.body, wanted);
      state.chartState = { config: wanted };
      note.textContent = window.MyappChart.note(answer.body);
      pngLink.href = window.MyappChart.png(chart);
      pngLink.hidden = false;
      $("save-chart-label").hidden = false;
    })
    .catch(function () { note.textContent = "The chart could not be drawn; try again."; });
}

$("chart-form").addEventListener("submit", function (event) {
  event.preventDefault();
  drawChart();
});
chartPanel.addEventListener("toggle", function () {
  if (chartPanel.open && state.lastRun && !state.chartState) { drawChart(); }
});
