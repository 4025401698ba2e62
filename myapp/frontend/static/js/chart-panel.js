/* Charts of query results with the vendored Chart.js: a suggestion from the column types, the
   drawing itself, and a PNG of it. Shared by the SQL page and the saved queries' pages.
   The data comes from the backend's chart endpoint, already cut by DuckDB to at most 10,000
   points; columns arrive in the order x, series (if any), then the y columns. */
(function () {
  "use strict";

  var PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                 "#7f7f7f", "#bcbd22", "#17becf"];
  var REDUCED = {
    bucketed: "The result was large, so DuckDB averaged y over equal ranges of x.",
    aggregated: "Rows with the same x were summed.",
    sampled: "The result was large, so DuckDB drew a random sample of 10,000 points.",
    truncated: "Only the first 10,000 points are shown."
  };

  /* Type classes are the contract's, through cells.js (loaded by every page with charts). */
  function typeClass(type) { return window.MyappCells.typeClass(type); }
  function isNumeric(type) { var c = typeClass(type); return c === "integer" || c === "number"; }
  function isTemporal(type) { return typeClass(type) === "temporal"; }

  /* A sensible first chart for these columns, or null when nothing can be drawn. */
  function suggest(columns) {
    var numeric = columns.filter(function (c) { return isNumeric(c.type); });
    var temporal = columns.filter(function (c) { return isTemporal(c.type); });
    var other = columns.filter(function (c) { return !isNumeric(c.type) && !isTemporal(c.type); });
    if (!numeric.length) { return null; }
    if (temporal.length) {
      return { type: "line", x: temporal[0].name, y: numeric.slice(0, 3).map(name), series: null };
    }
    if (other.length) {
      return { type: "bar", x: other[0].name, y: numeric.slice(0, 3).map(name), series: null };
    }
    if (numeric.length >= 2) {
      return { type: "scatter", x: numeric[0].name, y: [numeric[1].name], series: null };
    }
    return null;
  }

  function name(column) { return column.name; }

  function number(value) {
    if (value === null || value === undefined) { return null; }
    var n = Number(value);
    return isFinite(n) ? n : null;
  }

  /* Category and series labels read like the table's cells (dates without a midnight time). */
  function label(value, type) {
    if (value === null || value === undefined) { return "NULL"; }
    if (window.MyappCells) { return window.MyappCells.format(value, type); }
    return typeof value === "object" ? JSON.stringify(value) : String(value);
  }

  function color(i, alpha) {
    var hex = PALETTE[i % PALETTE.length];
    if (alpha === undefined) { return hex; }
    var r = parseInt(hex.slice(1, 3), 16), g = parseInt(hex.slice(3, 5), 16), b = parseInt(hex.slice(5, 7), 16);
    return "rgba(" + r + "," + g + "," + b + "," + alpha + ")";
  }

  /* Chart.js draws on a transparent canvas; paint the page's background first so the PNG looks
     like the screen. */
  var background = {
    id: "myappBackground",
    beforeDraw: function (chart) {
      var ctx = chart.ctx;
      var style = getComputedStyle(chart.canvas);
      ctx.save();
      ctx.globalCompositeOperation = "destination-over";
      ctx.fillStyle = style.getPropertyValue("--pico-background-color").trim() || "#ffffff";
      ctx.fillRect(0, 0, chart.width, chart.height);
      ctx.restore();
    }
  };

  /* Chart.js datasets from the endpoint's rows. */
  function build(data, config) {
    var hasSeries = Boolean(config.series);
    var firstY = hasSeries ? 2 : 1;
    var yNames = data.columns.slice(firstY).map(name);
    var rows = data.rows;
    var xType = data.columns[0].type;
    var seriesType = hasSeries ? data.columns[1].type : null;
    var numericX = isNumeric(xType);
    var pointwise = config.type === "scatter" || (numericX && (config.type === "line" || config.type === "area"));
    var groups = [];  // one per (series value, y column)
    var byKey = {};
    function group(seriesValue, yIndex) {
      var key = (hasSeries ? label(seriesValue, seriesType) : "") + "\u0000" + yIndex;
      if (!byKey[key]) {
        var title = yNames[yIndex];
        if (hasSeries) { title = label(seriesValue, seriesType) + (yNames.length > 1 ? " · " + yNames[yIndex] : ""); }
        byKey[key] = { label: title, points: [], values: {} };
        groups.push(byKey[key]);
      }
      return byKey[key];
    }
    var labels = [];
    var seen = {};
    rows.forEach(function (row) {
      var x = row[0];
      var seriesValue = hasSeries ? row[1] : null;
      if (!pointwise) {
        var key = label(x, xType);
        if (!(key in seen)) { seen[key] = labels.length; labels.push(key); }
      }
      for (var i = 0; i < yNames.length; i++) {
        var g = group(seriesValue, i);
        var y = number(row[firstY + i]);
        if (pointwise) { g.points.push({ x: number(x), y: y }); }
        else { g.values[label(x, xType)] = y; }
      }
    });
    var fill = config.type === "area";
    var datasets = groups.map(function (g, i) {
      var set = { label: g.label };
      if (pointwise) { set.data = g.points; }
      else { set.data = labels.map(function (l) { return l in g.values ? g.values[l] : null; }); }
      if (config.type === "pie") {
        set.backgroundColor = labels.map(function (_, j) { return color(j); });
      } else {
        set.borderColor = color(i);
        set.backgroundColor = fill ? color(i, 0.3) : color(i, config.type === "bar" ? 0.8 : 1);
        set.fill = fill;
        set.pointRadius = config.type === "scatter" ? 2 : (rows.length > 200 ? 0 : 2);
        set.borderWidth = config.type === "bar" ? 0 : 1.5;
        set.spanGaps = true;
      }
      return set;
    });
    return { labels: pointwise ? undefined : labels, datasets: datasets, pointwise: pointwise };
  }

  function render(canvas, data, config) {
    var previous = window.Chart.getChart(canvas);
    if (previous) { previous.destroy(); }
    var built = build(data, config);
    var type = { area: "line", line: "line", bar: "bar", scatter: "scatter", pie: "pie" }[config.type];
    var text = getComputedStyle(document.body).color;
    var grid = themeGrid();
    var yTitle = config.y.join(", ");
    var options = {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      color: text,
      plugins: {
        legend: { display: config.type === "pie" || built.datasets.length > 1, labels: { color: text } },
        title: { display: Boolean(config.title), text: config.title || "", color: text }
      }
    };
    if (config.type !== "pie") {
      options.scales = {
        x: { type: built.pointwise ? "linear" : "category", title: { display: true, text: config.x, color: text }, ticks: { color: text }, grid: { color: grid }, border: { color: grid } },
        y: { title: { display: true, text: yTitle, color: text }, ticks: { color: text }, grid: { color: grid }, border: { color: grid } }
      };
    }
    var chart = new window.Chart(canvas, {
      type: type,
      data: { labels: built.labels, datasets: built.datasets },
      options: options,
      plugins: [background]
    });
    canvas.setAttribute("aria-label", describe(config, data));
    return chart;
  }

  /* Grid lines in the page's own muted border colour, so they show in dark mode too. */
  function themeGrid() {
    var style = getComputedStyle(document.body);
    return style.getPropertyValue("--pico-muted-border-color").trim() || "rgba(128,128,128,.3)";
  }

  function describe(config, data) {
    var kind = { bar: "Bar", line: "Line", area: "Area", scatter: "Scatter", pie: "Pie" }[config.type];
    var text = kind + " chart of " + config.y.join(", ") + " by " + config.x;
    if (config.series) { text += ", one series per " + config.series; }
    return text + " (" + data.row_count + " points)";
  }

  function note(data) {
    var text = data.row_count.toLocaleString() + (data.row_count === 1 ? " point." : " points.");
    if (data.reduced) { text += " " + REDUCED[data.reduced]; }
    return text;
  }

  function png(chart) { return chart.toBase64Image("image/png", 1); }

  window.MyappChart = {
    isNumeric: isNumeric,
    isTemporal: isTemporal,
    suggest: suggest,
    render: render,
    note: note,
    png: png,
    themeGrid: themeGrid
  };
})();
