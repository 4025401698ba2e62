/* The SQL page: CodeMirror editor with completion, run with progress and cancel, results with
   types, errors marked in the editor, the chart panel, exports, session history and saving.
   Every request goes to the page's own /sql/… URLs (see views/sql.py). */
(function () {
  "use strict";

  var config = JSON.parse(document.getElementById("sql-config").textContent);
  var urls = config.urls;
  var HISTORY_KEY = "myapp.sql.history";
  var HISTORY_SIZE = 25;
  var POLL_MS = 500;
  var SHOW_CANCEL_AFTER_MS = 300;

  var $ = function (id) { return document.getElementById(id); };
  var textarea = $("sql-input");
  var form = $("sql-form");
  var runButton = $("run-button");
  var cancelButton = $("cancel-button");
  var statusLine = $("run-status");
  var progress = $("run-progress");
  var errorBox = $("sql-error");
  var results = $("results");
  var table = $("results-table");

  var saved = config.saved;          // the saved query being edited, if any
  var lastRun = null;                // {sql, params, result} of the last successful run
  var running = null;                // {id, started, pollTimer, cancelTimer}
  var chartState = null;             // {config} of the chart last drawn
  var errorMark = null;
  var paramState = {};               // name -> {type, value}

  /* -- editor ------------------------------------------------------------------------------ */
  var tables = {};
  config.datasets.forEach(function (d) {
    tables[d.name] = d.columns.map(function (c) { return c.name; });
  });

  var editor = window.CodeMirror.fromTextArea(textarea, {
    mode: "text/x-sql",
    lineNumbers: true,
    lineWrapping: true,
    indentWithTabs: false,
    smartIndent: true,
    screenReaderLabel: "SQL query",
    placeholder: "SELECT * FROM …",
    // The completion list lives inside the page's main landmark, named, so screen readers and
    // axe-core find it where the editor is.
    hintOptions: { tables: tables, completeSingle: false, container: $("completion-box") },
    extraKeys: {
      "Ctrl-Enter": function () { run(); },
      "Cmd-Enter": function () { run(); },
      "Ctrl-Space": "autocomplete",
      // Tab leaves the editor, so the page stays usable from the keyboard.
      "Tab": false,
      "Shift-Tab": false
    }
  });
  new MutationObserver(function () {
    $("completion-box").querySelectorAll("[role=listbox]").forEach(function (list) {
      list.setAttribute("aria-label", "Completions");
    });
  }).observe($("completion-box"), { childList: true });
  editor.on("inputRead", function (cm, change) {
    // After "table." offer the table's columns.
    if (change.text.length === 1 && /[A-Za-z0-9_"]\.$/.test(cm.getLine(change.from.line).slice(0, change.from.ch + change.text[0].length))) {
      cm.showHint({ completeSingle: false });
    }
  });
  var paramTimer = null;
  editor.on("change", function () {
    editor.save();  // the textarea always holds what the editor shows
    clearErrorMark();
    clearTimeout(paramTimer);
    paramTimer = setTimeout(renderParams, 250);
  });

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    run();
  });
  cancelButton.addEventListener("click", cancel);

  document.querySelectorAll("[data-insert], [data-insert-table]").forEach(function (button) {
    button.addEventListener("click", function () {
      var text = button.getAttribute("data-insert") || button.getAttribute("data-insert-table");
      editor.replaceSelection(quoteName(text));
      editor.focus();
    });
  });

  function quoteName(text) {
    return /^[a-z_][a-z0-9_]*$/.test(text) ? text : '"' + text.replace(/"/g, '""') + '"';
  }

  /* -- parameters -------------------------------------------------------------------------- */
  function parameterNames(sql) {
    // Leave out strings, quoted names and comments before looking for $name.
    var code = sql
      .replace(/\$([A-Za-z_][A-Za-z0-9_]*)?\$[\s\S]*?\$\1\$/g, " ")
      .replace(/'(?:[^']|'')*'/g, " ")
      .replace(/"(?:[^"]|"")*"/g, " ")
      .replace(/--[^\n]*/g, " ")
      .replace(/\/\*[\s\S]*?\*\//g, " ");
    var names = [];
    var re = /\$([A-Za-z_][A-Za-z0-9_]*)/g;
    var m;
    while ((m = re.exec(code))) {
      if (names.indexOf(m[1]) < 0) { names.push(m[1]); }
    }
    return names;
  }

  function renderParams() {
    var names = parameterNames(editor.getValue());
    var box = $("param-rows");
    var fieldset = $("param-fields");
    var existing = {};
    box.querySelectorAll("[data-param]").forEach(function (row) {
      existing[row.getAttribute("data-param")] = row;
    });
    var current = Object.keys(existing).join(",");
    if (current === names.join(",")) { return; }
    box.textContent = "";
    names.forEach(function (n) {
      if (!paramState[n]) { paramState[n] = { type: "text", value: "" }; }
      box.appendChild(paramRow(n));
    });
    fieldset.hidden = names.length === 0;
  }

  function paramRow(n) {
    var state = paramState[n];
    var row = document.createElement("div");
    row.className = "param-row";
    row.setAttribute("data-param", n);
    var id = "param-" + n;
    var label = document.createElement("label");
    label.setAttribute("for", id);
    label.textContent = "$" + n;
    var type = document.createElement("select");
    type.setAttribute("aria-label", "Type of $" + n);
    type.setAttribute("data-testid", "param-type-" + n);
    config.parameter_types.forEach(function (t) {
      var option = document.createElement("option");
      option.value = t;
      option.textContent = t;
      option.selected = t === state.type;
      type.appendChild(option);
    });
    var holder = document.createElement("span");
    holder.className = "param-value";
    function input() {
      holder.textContent = "";
      var field;
      if (state.type === "boolean") {
        field = document.createElement("select");
        ["", "true", "false"].forEach(function (v) {
          var option = document.createElement("option");
          option.value = v;
          option.textContent = v || "(choose)";
          option.selected = String(state.value) === v;
          field.appendChild(option);
        });
      } else {
        field = document.createElement("input");
        field.type = { integer: "number", number: "number", date: "date" }[state.type] || "text";
        if (state.type === "integer") { field.step = "1"; }
        if (state.type === "number") { field.step = "any"; }
        field.value = state.value === null || state.value === undefined ? "" : String(state.value);
      }
      field.id = id;
      field.setAttribute("data-testid", "param-" + n);
      field.addEventListener("input", function () { state.value = field.value; });
      field.addEventListener("change", function () { state.value = field.value; });
      holder.appendChild(field);
    }
    type.addEventListener("change", function () { state.type = type.value; input(); });
    input();
    row.appendChild(label);
    row.appendChild(type);
    row.appendChild(holder);
    return row;
  }

  function typedValue(state) {
    var v = state.value === null || state.value === undefined ? "" : String(state.value);
    if (state.type === "text") { return v; }
    if (v === "") { return null; }
    if (state.type === "integer") { return /^[+-]?\d+$/.test(v.trim()) ? parseInt(v, 10) : v; }
    if (state.type === "number") { return isFinite(Number(v)) ? Number(v) : v; }
    if (state.type === "boolean") { return v === "true"; }
    return v;
  }

  function currentParams() {
    var params = {};
    parameterNames(editor.getValue()).forEach(function (n) {
      var value = typedValue(paramState[n] || { type: "text", value: "" });
      if (value !== null) { params[n] = value; }
    });
    return params;
  }

  /* -- running ----------------------------------------------------------------------------- */
  function uuid4() {
    if (window.crypto && window.crypto.randomUUID) { return window.crypto.randomUUID(); }
    var b = window.crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    var h = Array.prototype.map.call(b, function (x) { return (x + 0x100).toString(16).slice(1); }).join("");
    return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
  }

  function postJSON(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: JSON.stringify(body)
    }).then(readJSON);
  }

  function readJSON(response) {
    return response.text().then(function (text) {
      var body = null;
      try { body = text ? JSON.parse(text) : null; } catch (e) { body = null; }
      if (!response.ok && !(body && body.error)) {
        body = { error: { code: "http_" + response.status, message: "The server answered " + response.status + "; try again in a moment." } };
      }
      return { ok: response.ok, status: response.status, body: body };
    });
  }

  function seconds(ms) { return (ms / 1000).toFixed(1) + " s"; }

  function run() {
    if (running) { return; }
    editor.save();
    var sql = editor.getValue();
    if (!sql.trim()) {
      showError({ message: "Write a query first." });
      return;
    }
    var params = currentParams();
    var id = uuid4();
    hideError();
    running = { id: id, started: performance.now() };
    runButton.setAttribute("aria-busy", "true");
    runButton.disabled = true;
    statusLine.textContent = "Running…";
    running.cancelTimer = setTimeout(function () {
      cancelButton.hidden = false;
      progress.hidden = false;
      progress.removeAttribute("value");
    }, SHOW_CANCEL_AFTER_MS);
    running.pollTimer = setTimeout(poll, POLL_MS);
    var limit = parseInt($("row-limit").value, 10);
    postJSON(urls.run, { sql: sql, params: params, limit: limit, id: id })
      .catch(function () {
        return { ok: false, body: { error: { code: "unreachable", message: "The server could not be reached; check your connection and try again." } } };
      })
      .then(function (answer) {
        var ran = running;
        stopRunning();
        if (answer.ok) {
          lastRun = { sql: sql, params: params, result: answer.body };
          showResults(answer.body);
          rememberInAddress(sql);
          remember({ sql: sql, rows: answer.body.row_count, ms: answer.body.elapsed_ms, ok: true });
        } else {
          var error = (answer.body && answer.body.error) || { message: "The query failed." };
          clearResults();
          showError(error);
          statusLine.textContent = error.code === "query_cancelled"
            ? "Cancelled after " + seconds(performance.now() - ran.started) + "."
            : "The query failed.";
          remember({ sql: sql, ok: false });
        }
      });
  }

  function stopRunning() {
    if (!running) { return; }
    clearTimeout(running.pollTimer);
    clearTimeout(running.cancelTimer);
    running = null;
    runButton.removeAttribute("aria-busy");
    runButton.disabled = false;
    cancelButton.hidden = true;
    cancelButton.disabled = false;
    progress.hidden = true;
  }

  function poll() {
    var current = running;
    if (!current) { return; }
    fetch(urls.status.replace("QUERY_ID", current.id), { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(readJSON)
      .then(function (answer) {
        if (running !== current) { return; }
        if (answer.ok && answer.body.state === "running") {
          var elapsed = seconds(performance.now() - current.started);
          if (answer.body.progress !== null && answer.body.progress !== undefined) {
            progress.value = answer.body.progress;
            statusLine.textContent = "Running… " + Math.round(answer.body.progress) + "% after " + elapsed;
          } else {
            progress.removeAttribute("value");
            statusLine.textContent = "Running… " + elapsed;
          }
        }
      })
      .catch(function () { /* the run itself reports failures */ })
      .then(function () {
        if (running === current) { current.pollTimer = setTimeout(poll, POLL_MS); }
      });
  }

  function cancel() {
    if (!running) { return; }
    cancelButton.disabled = true;
    statusLine.textContent = "Cancelling…";
    postJSON(urls.cancel.replace("QUERY_ID", running.id), {});
  }

  /* -- results ----------------------------------------------------------------------------- */
  function showResults(body) {
    table.textContent = "";
    var thead = table.createTHead();
    var header = thead.insertRow();
    var Cells = window.MyappCells;
    body.columns.forEach(function (column) {
      var th = document.createElement("th");
      th.scope = "col";
      th.className = "cell-" + Cells.kind(0, column.type);
      var nameSpan = document.createElement("span");
      nameSpan.textContent = column.name;
      var type = document.createElement("small");
      type.className = "type";
      type.textContent = column.type;
      th.appendChild(nameSpan);
      th.appendChild(document.createElement("br"));
      th.appendChild(type);
      header.appendChild(th);
    });
    var tbody = table.createTBody();
    var fragment = document.createDocumentFragment();
    body.rows.forEach(function (row) {
      var tr = document.createElement("tr");
      row.forEach(function (value, i) {
        tr.appendChild(Cells.fill(document.createElement("td"), value, body.columns[i].type));
      });
      fragment.appendChild(tr);
    });
    tbody.appendChild(fragment);
    results.hidden = false;
    $("export-form").querySelectorAll("button").forEach(function (b) { b.disabled = false; });
    var rows = body.row_count.toLocaleString() + (body.row_count === 1 ? " row" : " rows");
    statusLine.textContent = (body.truncated ? "First " + rows + " (the query has more; export to get them all)" : rows) +
      " in " + body.elapsed_ms.toLocaleString() + " ms.";
    prepareChart(body.columns);
  }

  /* A failed run leaves nothing of the previous result on screen: its table, chart and export
     would read as the answer to the query that just failed. */
  function clearResults() {
    lastRun = null;
    results.hidden = true;
    table.textContent = "";
    $("export-form").querySelectorAll("button").forEach(function (b) { b.disabled = true; });
  }

  /* The address carries the query and its parameters, so this result can be bookmarked,
     shared and reloaded; a saved query being edited keeps its own address. */
  function rememberInAddress(sql) {
    if (saved || !window.history.replaceState) { return; }
    var query = new URLSearchParams();
    query.set("sql", sql);
    parameterNames(sql).forEach(function (n) {
      var state = paramState[n];
      if (!state) { return; }
      query.set("p." + n, state.value === null || state.value === undefined ? "" : String(state.value));
      if (state.type !== "text") { query.set("t." + n, state.type); }
    });
    window.history.replaceState(null, "", window.location.pathname + "?" + query.toString());
  }

  /* -- errors ------------------------------------------------------------------------------ */
  function showError(error) {
    $("sql-error-message").textContent = error.message;
    var detail = error.detail || {};
    var where = $("sql-error-where");
    var more = $("sql-error-detail");
    clearErrorMark();
    if (detail.line) {
      where.hidden = false;
      $("sql-error-position").textContent = "Line " + detail.line + ", column " + detail.column + ".";
      var from = { line: detail.line - 1, ch: detail.column - 1 };
      var to = { line: detail.line - 1, ch: detail.column - 1 + (detail.length || 1) };
      errorMark = editor.markText(from, to, { className: "cm-sql-error", attributes: { "data-testid": "error-mark" } });
      editor.addLineClass(from.line, "background", "cm-sql-error-line");
      errorMark.lineNumber = from.line;
      $("sql-error-goto").onclick = function () { editor.focus(); editor.setSelection(from, to); };
    } else {
      where.hidden = true;
    }
    var extra = detail.message && detail.message.indexOf("\n") >= 0 ? detail.message : "";
    more.textContent = extra;
    more.hidden = !extra;
    errorBox.hidden = false;
  }

  function hideError() {
    errorBox.hidden = true;
    clearErrorMark();
  }

  function clearErrorMark() {
    if (errorMark) {
      editor.removeLineClass(errorMark.lineNumber, "background", "cm-sql-error-line");
      errorMark.clear();
      errorMark = null;
    }
  }

  /* -- chart ------------------------------------------------------------------------------- */
  var chartForm = $("chart-form");
  var chartPanel = $("chart-panel");
  var chartCanvas = $("chart-canvas");
  var pngLink = $("chart-png");

  function option(select, value, text, selected) {
    var o = document.createElement("option");
    o.value = value;
    o.textContent = text;
    o.selected = Boolean(selected);
    select.appendChild(o);
  }

  function prepareChart(columns) {
    var wanted = (saved && saved.chart && columnsFit(saved.chart, columns)) ? saved.chart : window.MyappChart.suggest(columns);
    if (chartState && columnsFit(chartState.config, columns)) { wanted = chartState.config; }
    var x = $("chart-x");
    var series = $("chart-series");
    var y = $("chart-y");
    x.textContent = "";
    series.textContent = "";
    y.querySelectorAll("label").forEach(function (l) { l.remove(); });
    option(series, "", "(none)", !wanted || !wanted.series);
    columns.forEach(function (c) {
      option(x, c.name, c.name + " (" + c.type + ")", wanted && wanted.x === c.name);
      option(series, c.name, c.name, wanted && wanted.series === c.name);
    });
    var numeric = columns.filter(function (c) { return window.MyappChart.isNumeric(c.type); });
    numeric.forEach(function (c) {
      var l = document.createElement("label");
      var box = document.createElement("input");
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
    var names = columns.map(function (c) { return c.name; });
    return [chart.x].concat(chart.y, chart.series ? [chart.series] : []).every(function (n) {
      return names.indexOf(n) >= 0;
    });
  }

  function chartConfig() {
    var ys = Array.prototype.map.call(
      $("chart-y").querySelectorAll("input:checked"), function (b) { return b.value; });
    return {
      type: $("chart-type").value,
      x: $("chart-x").value,
      y: ys,
      series: $("chart-series").value || null
    };
  }

  function drawChart() {
    if (!lastRun) { return; }
    var wanted = chartConfig();
    var note = $("chart-note");
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
        var chart = window.MyappChart.render(chartCanvas, answer.body, wanted);
        chartState = { config: wanted };
        note.textContent = window.MyappChart.note(answer.body);
        pngLink.href = window.MyappChart.png(chart);
        pngLink.hidden = false;
        $("save-chart-label").hidden = false;
      })
      .catch(function () { note.textContent = "The chart could not be drawn; try again."; });
  }

  chartForm.addEventListener("submit", function (event) {
    event.preventDefault();
    drawChart();
  });
  chartPanel.addEventListener("toggle", function () {
    if (chartPanel.open && lastRun && !chartState) { drawChart(); }
  });

  /* -- export ------------------------------------------------------------------------------ */
  $("export-form").addEventListener("submit", function (event) {
    if (!lastRun) {
      // Only a result on screen can be exported: never one from an earlier run.
      event.preventDefault();
      return;
    }
    var source = lastRun;
    $("export-sql").value = source.sql;
    $("export-params").value = JSON.stringify(source.params);
    $("export-filename").value = saved ? saved.slug : "query";
  });

  /* -- history ----------------------------------------------------------------------------- */
  function history() {
    try { return JSON.parse(sessionStorage.getItem(HISTORY_KEY) || "[]"); } catch (e) { return []; }
  }

  function remember(entry) {
    entry.at = new Date().toISOString();
    var list = history().filter(function (h) { return h.sql !== entry.sql; });
    list.unshift(entry);
    try { sessionStorage.setItem(HISTORY_KEY, JSON.stringify(list.slice(0, HISTORY_SIZE))); } catch (e) { /* full or disabled */ }
    renderHistory();
  }

  function renderHistory() {
    var list = $("history-list");
    var items = history();
    list.textContent = "";
    $("history-empty").hidden = items.length > 0;
    items.forEach(function (h) {
      var li = document.createElement("li");
      var button = document.createElement("button");
      button.type = "button";
      button.className = "outline secondary history-item";
      var first = h.sql.trim().split("\n")[0];
      button.textContent = first.length > 90 ? first.slice(0, 90) + "…" : first;
      button.title = "Put this query back in the editor";
      button.addEventListener("click", function () { editor.setValue(h.sql); editor.focus(); });
      var meta = document.createElement("small");
      var time = new Date(h.at).toLocaleTimeString();
      var rows = h.ok ? h.rows.toLocaleString() + (h.rows === 1 ? " row · " : " rows · ") : "failed · ";
      meta.textContent = " " + rows + time;
      li.appendChild(button);
      li.appendChild(meta);
      list.appendChild(li);
    });
  }

  /* -- saving ------------------------------------------------------------------------------ */
  var dialog = $("save-dialog");
  var saveButton = $("save-button");
  if (saveButton) {
    saveButton.addEventListener("click", function () {
      $("save-error").hidden = true;
      $("save-chart-label").hidden = !(chartState || (saved && saved.chart));
      dialog.showModal();
      $("save-title").focus();
    });
  }
  $("save-cancel").addEventListener("click", function () { dialog.close(); });
  $("save-form").addEventListener("submit", function (event) {
    event.preventDefault();
    editor.save();
    var asNew = $("save-as-new") && $("save-as-new").checked;
    var names = parameterNames(editor.getValue());
    var keepChart = $("save-chart").checked && !$("save-chart-label").hidden;
    var body = {
      title: $("save-title").value,
      description: $("save-description").value,
      sql: editor.getValue(),
      parameters: names.map(function (n) {
        var state = paramState[n] || { type: "text", value: "" };
        var value = typedValue(state);
        return { name: n, type: state.type, default: value === "" && state.type !== "text" ? null : value };
      }),
      chart: keepChart ? (chartState ? chartState.config : saved.chart) : null
    };
    if (saved && !asNew) {
      body.slug = saved.slug;
      body.base_version = saved.latest_version;
    }
    // A title another query has is asked about, not silently saved as "-2" or twice.
    body.if_title_exists = "error";
    $("save-submit").setAttribute("aria-busy", "true");
    postJSON(urls.save, body).then(function (answer) {
      $("save-submit").removeAttribute("aria-busy");
      if (!answer.ok) {
        var box = $("save-error");
        var error = answer.body.error;
        box.textContent = error.message;
        if (error.code === "title_exists" && error.detail && error.detail.slug) {
          box.appendChild(document.createTextNode(" "));
          var open = document.createElement("a");
          open.href = urls.query_page.replace("SLUG", encodeURIComponent(error.detail.slug));
          open.textContent = "Open “" + error.detail.title + "”";
          open.setAttribute("data-testid", "open-existing");
          box.appendChild(open);
          box.appendChild(document.createTextNode(", or change the title above and save again."));
          $("save-title").setAttribute("aria-invalid", "true");
          $("save-title").focus();
          $("save-title").select();
        }
        box.hidden = false;
        return;
      }
      $("save-title").removeAttribute("aria-invalid");
      dialog.close();
      saved = answer.body;
      var status = $("save-status");
      status.textContent = "Saved as ";
      var link = document.createElement("a");
      link.href = urls.query_page.replace("SLUG", encodeURIComponent(saved.slug));
      link.textContent = saved.title;
      link.setAttribute("data-testid", "saved-link");
      status.appendChild(link);
      status.appendChild(document.createTextNode(" (version " + saved.version + ")."));
      if (saveButton) { saveButton.textContent = "Save as version " + (saved.latest_version + 1) + "…"; }
    });
  });

  /* -- start ------------------------------------------------------------------------------- */
  if (saved) {
    saved.parameters.forEach(function (p) {
      paramState[p.name] = { type: p.type, value: p.default === null ? "" : String(p.default) };
    });
  }
  var address = config.address || { params: {}, types: {} };
  Object.keys(address.params || {}).forEach(function (n) {
    paramState[n] = { type: (address.types || {})[n] || "text", value: address.params[n] };
  });
  renderParams();
  renderHistory();
  editor.focus();
  editor.setCursor(editor.lineCount(), 0);
  if (address.run) { run(); }
})();
