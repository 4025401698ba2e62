/* A result on screen: the table (cells.js draws each cell), the status line, the chart
   panel's columns, the export buttons, and the address that reproduces it. */
import { $, state } from "./state.js";
import { paramState, parameterNames } from "./params.js";
import { prepareChart } from "./chart.js";

const results = $("results");
const table = $("results-table");

function exportButtons(enabled) {
  $("export-form").querySelectorAll("button").forEach(function (b) { b.disabled = !enabled; });
}

export function showResults(body) {
  table.textContent = "";
  const thead = table.createTHead();
  const header = thead.insertRow();
  const Cells = window.MyappCells;
  body.columns.forEach(function (column) {
    const th = document.createElement("th");
    th.scope = "col";
    th.className = "cell-" + Cells.kind(0, column.type);
    const nameSpan = document.createElement("span");
    nameSpan.textContent = column.name;
    const type = document.createElement("small");
    type.className = "type";
    type.textContent = column.type;
    th.appendChild(nameSpan);
    th.appendChild(document.createElement("br"));
    th.appendChild(type);
    header.appendChild(th);
  });
  const tbody = table.createTBody();
  const fragment = document.createDocumentFragment();
  body.rows.forEach(function (row) {
    const tr = document.createElement("tr");
    row.forEach(function (value, i) {
      tr.appendChild(Cells.fill(document.createElement("td"), value, body.columns[i].type));
    });
    fragment.appendChild(tr);
  });
  tbody.appendChild(fragment);
  results.hidden = false;
  exportButtons(true);
  const rows = body.row_count.toLocaleString() + (body.row_count === 1 ? " row" : " rows");
  $("run-status").textContent = (body.truncated ? "First " + rows + " (the query has more; export to get them all)" : rows) +
    " in " + body.elapsed_ms.toLocaleString() + " ms.";
  prepareChart(body.columns);
}

/* A failed run leaves nothing of the previous result on screen: its table, chart and export
   would read as the answer to the query that just failed. */
export function clearResults() {
  state.lastRun = null;
  results.hidden = true;
  table.textContent = "";
  exportButtons(false);
}

/* The address carries the query and its parameters, so this result can be bookmarked,
   shared and reloaded; a saved query being edited keeps its own address. */
export function rememberInAddress(sql) {
  if (state.saved || !window.history.replaceState) { return; }
  const query = new URLSearchParams();
  query.set("sql", sql);
  parameterNames(sql).forEach(function (n) {
    const param = paramState[n];
    if (!param) { return; }
    query.set("p." + n, param.value === null || param.value === undefined ? "" : String(param.value));
    if (param.type !== "text") { query.set("t." + n, param.type); }
  });
  window.history.replaceState(null, "", window.location.pathname + "?" + query.toString());
}

/* Only a result on screen can be exported: never one from an earlier run. */
$("export-form").addEventListener("submit", function (event) {
  const source = state.lastRun;
  if (!source) {
    event.preventDefault();
    return;
  }
  $("export-sql").value = source.sql;
  $("export-params").value = JSON.stringify(source.params);
  $("export-filename").value = state.saved ? state.saved.slug : "query";
});
