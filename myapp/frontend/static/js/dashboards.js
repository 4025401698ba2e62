/* A dashboard's tiles (also a share link's page): each tile asks for its own result, so a slow
   or failing tile shows its own spinner or error and holds up no other. The values come from
   the page's address (rendered into #dash-config); Refresh runs every tile again, bypassing
   the cache. A module: calls go through js/http.js. */
import { postJSON } from "./http.js";

(function () {
  "use strict";

  var source = document.getElementById("dash-config");
  if (!source) { return; }
  var config = JSON.parse(source.textContent);
  var status = document.getElementById("dash-status");
  var refreshButton = document.getElementById("dash-refresh");
  var charts = {};

  function el(tag, text, className) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) { node.textContent = text; }
    if (className) { node.className = className; }
    return node;
  }

  function cell(value) {
    if (value === null || value === undefined) { return "NULL"; }
    return typeof value === "object" ? JSON.stringify(value) : String(value);
  }

  function formatNumber(value) {
    var n = Number(value);
    if (value === null || value === undefined || value === "" || !isFinite(n)) { return cell(value); }
    return n.toLocaleString(undefined, { maximumFractionDigits: 2 });
  }

  function renderTable(body, result, id) {
    var wrap = el("div", null, "table-scroll");
    wrap.tabIndex = 0;
    wrap.setAttribute("aria-labelledby", "tile-" + id + "-heading");
    var table = el("table", null, "striped");
    table.setAttribute("data-testid", "tile-" + id + "-table");
    var head = table.createTHead().insertRow();
    result.columns.forEach(function (c) {
      var th = el("th", c.name);
      th.scope = "col";
      head.appendChild(th);
    });
    var tbody = table.createTBody();
    result.rows.forEach(function (row) {
      var tr = tbody.insertRow();
      row.forEach(function (value, i) {
        var td = tr.insertCell();
        var type = result.columns[i] ? result.columns[i].type : null;
        // The one cell rule of every table (cells.js): long values cut, marked, kept whole.
        if (window.MyappCells) { window.MyappCells.fill(td, value, type); return; }
        td.textContent = cell(value);
        if (value === null) { td.className = "null"; }
      });
    });
    wrap.appendChild(table);
    body.appendChild(wrap);
    var note = result.truncated ? "First " + result.row_count + " rows." : result.row_count + " row" + (result.row_count === 1 ? "" : "s") + ".";
    body.appendChild(el("p", note, "tile-note"));
  }

  function renderNumber(body, result, id, compare) {
    var row = result.rows[0] || [];
    var value = el("p", row.length ? formatNumber(row[0]) : "—", "tile-number");
    value.setAttribute("data-testid", "tile-" + id + "-number");
    body.appendChild(value);
    if (result.columns[0]) { body.appendChild(el("p", result.columns[0].name, "tile-note")); }
    if (compare && row.length > 1) {
      var a = Number(row[0]), b = Number(row[1]);
      var text = "compared with " + formatNumber(row[1]);
      if (isFinite(a) && isFinite(b) && b !== 0) {
        var change = (a - b) / Math.abs(b) * 100;
        text += " (" + (change >= 0 ? "+" : "") + change.toFixed(1) + "%)";
      }
      body.appendChild(el("p", text, "tile-compare"));
    }
  }

  function renderChart(body, data, chartConfig, id) {
    if (!window.MyappChart || !chartConfig) {
      body.appendChild(el("p", "The chart cannot be drawn here.", "tile-note"));
      return;
    }
    var box = el("div", null, "chart-box");
    var canvas = el("canvas");
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", "Chart");
    canvas.setAttribute("data-testid", "tile-" + id + "-chart");
    box.appendChild(canvas);
    body.appendChild(box);
    if (charts[id]) { charts[id].destroy(); }
    charts[id] = window.MyappChart.render(canvas, data, chartConfig);
    canvas.setAttribute("data-points", String((data.rows || []).length));
    body.appendChild(el("p", window.MyappChart.note(data), "tile-note"));
  }

  function tileUrl(tile) {
    var id = tile.getAttribute("data-tile-id");
    if (tile.getAttribute("data-tile-type") === "chart" && config.chartUrl) { return config.chartUrl; }
    return config.runUrl.replace("TILE", encodeURIComponent(id));
  }

  var pending = 0;
  function settle() {
    pending -= 1;
    if (pending === 0 && status) { status.textContent = "All tiles loaded."; }
  }

  // At most this many tiles ask at once: the server counts each viewer's running queries
  // (MYAPP_MAX_QUERIES_PER_USER) and answers 429 past them; the rest wait their turn here, and
  // a tile answered 429 anyway (a smaller allowance, other pages open) asks again a little
  // later, as Retry-After says, a few times.
  var MAX_PARALLEL = 4;
  var MAX_RETRIES = 20;
  var queue = [];
  var inFlight = 0;

  function schedule(tile, refresh) {
    var body = tile.querySelector(".tile-body");
    body.replaceChildren(el("p", "Loading…", "tile-status"));
    body.firstChild.setAttribute("aria-busy", "true");
    tile.removeAttribute("data-state");
    pending += 1;
    queue.push([tile, refresh, 0]);
    pump();
  }

  function pump() {
    while (inFlight < MAX_PARALLEL && queue.length) {
      var job = queue.shift();
      inFlight += 1;
      load(job[0], job[1], job[2]).then(function () { inFlight -= 1; pump(); });
    }
  }

  function retryLater(tile, refresh, attempt, seconds) {
    window.setTimeout(function () {
      queue.push([tile, refresh, attempt + 1]);
      pump();
    }, Math.min(Math.max(seconds, 0.5), 5) * 1000 * (0.75 + Math.random() / 2));
  }

  function load(tile, refresh, attempt) {
    var id = tile.getAttribute("data-tile-id");
    var type = tile.getAttribute("data-tile-type");
    var body = tile.querySelector(".tile-body");
    return postJSON(tileUrl(tile), { params: config.params, version: config.version || null, refresh: !!refresh })
      .then(function (response) {
        if (response.status === 429 && attempt < MAX_RETRIES) {
          return { retry: Number(response.headers.get("Retry-After")) || 1 };
        }
        return { ok: response.ok, answer: response.body };
      })
      .then(function (reply) {
        if (reply.retry) {
          retryLater(tile, refresh, attempt, reply.retry);
          return "retry";
        }
        body.replaceChildren();
        if (!reply.ok) {
          var message = (reply.answer.error && reply.answer.error.message) || "The tile could not be loaded.";
          var alert = el("p", message, "tile-error");
          alert.setAttribute("role", "alert");
          alert.setAttribute("data-testid", "tile-" + id + "-error");
          body.appendChild(alert);
          tile.setAttribute("data-state", "error");
          return;
        }
        var result = reply.answer.result || reply.answer;
        if (type === "chart") { renderChart(body, result, reply.answer.chart || config.chart, id); }
        else if (type === "number") { renderNumber(body, result, id, tile.hasAttribute("data-compare")); }
        else { renderTable(body, result, id); }
        tile.setAttribute("data-state", reply.answer.cached ? "cached" : "loaded");
      })
      .catch(function () {
        body.replaceChildren(el("p", "The tile could not be loaded; try Refresh.", "tile-error"));
        tile.setAttribute("data-state", "error");
      })
      .then(function (outcome) { if (outcome !== "retry") { settle(); } });
  }

  var tiles = Array.prototype.slice.call(document.querySelectorAll(".tile[data-tile-id]"))
    .filter(function (tile) { return tile.getAttribute("data-tile-type") !== "text"; });
  if (status && tiles.length) { status.textContent = "Loading " + tiles.length + " tiles…"; }
  tiles.forEach(function (tile) { schedule(tile, false); });
  if (refreshButton) {
    if (!tiles.length) { refreshButton.hidden = true; }
    refreshButton.addEventListener("click", function () {
      if (status) { status.textContent = "Running every tile again…"; }
      tiles.forEach(function (tile) { schedule(tile, true); });
    });
  }
})();
