/* How a value from the API reads in a table cell, for tables drawn in the browser. The same rule
   as myapp/contract/cells.py (server-rendered tables); read the reasons there. Its constants
   and the column-type classes come from the contract's JSON block (base.html). Exposes
   window.MyappCells = {format(value, type), kind(value, type), fill(td, value, type),
   cut(text), marker(total)}. Text past CUT_CHARS characters or CUT_LINES lines is cut and
   marked; fill() puts the whole value in a closed <details> beside it. */
(function () {
  "use strict";

  var contract = JSON.parse(document.getElementById("myapp-contract").textContent);
  var SIGNIFICANT = contract.cells.significant;
  var PLAIN_MIN = contract.cells.plain_min;
  var PLAIN_MAX = contract.cells.plain_max;
  var CLASSES = contract.type_classes.map(function (entry) {
    return { name: entry[0], pattern: new RegExp(entry[1]) };
  });
  var NUMERIC_TEXT = /^([+-]?)(\d+)(\.\d+)?$/;
  var MIDNIGHT = /^(\d{4,}-\d\d-\d\d)T00:00:00(\.0+)?(Z|[+-]00:?00)?$/;
  var TIMESTAMP = /^(\d{4,}-\d\d-\d\d)T(\d\d:\d\d)/;
  var CUT_CHARS = contract.cells.cut_chars;
  var CUT_LINES = contract.cells.cut_lines;

  function typeClass(type) {
    var t = String(type || "").toUpperCase();
    for (var i = 0; i < CLASSES.length; i++) {
      if (CLASSES[i].pattern.test(t)) { return CLASSES[i].name; }
    }
    return "other";
  }

  function group(digits) {
    return digits.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  }

  function grouped(text) {
    var m = NUMERIC_TEXT.exec(text);
    if (!m) { return text; }
    return m[1] + group(m[2]) + (m[3] || "");
  }

  function formatFloat(value) {
    if (isNaN(value)) { return "NaN"; }
    if (!isFinite(value)) { return value > 0 ? "Infinity" : "-Infinity"; }
    if (value === 0) { return "0"; }
    var magnitude = Math.abs(value);
    if (magnitude >= PLAIN_MAX || magnitude < PLAIN_MIN) {
      var parts = value.toExponential(SIGNIFICANT - 1).split("e");
      var mantissa = parts[0].indexOf(".") >= 0 ? parts[0].replace(/0+$/, "").replace(/\.$/, "") : parts[0];
      var exponent = parseInt(parts[1], 10);
      return mantissa + "e" + (exponent >= 0 ? "+" : "-") + Math.abs(exponent);
    }
    // Number(x.toPrecision(15)) is the nearest double to the 15-digit decimal; String() gives
    // its shortest round-trip text, plain in this range.
    return grouped(String(Number(value.toPrecision(SIGNIFICANT))));
  }

  function format(value, type) {
    if (value === null || value === undefined) { return "NULL"; }
    if (typeof value === "boolean") { return value ? "true" : "false"; }
    if (typeof value === "number") {
      var cls = typeClass(type);
      if (Number.isInteger(value) && cls !== "number") { return group(String(value)); }
      if (Number.isInteger(value) && Math.abs(value) < PLAIN_MAX) { return group(String(value)); }
      return formatFloat(value);
    }
    if (typeof value === "object") { return JSON.stringify(value); }
    var text = String(value);
    var c = typeClass(type);
    if (c === "integer" || c === "number") { return grouped(text); }
    if (c === "temporal" || (!type && TIMESTAMP.test(text))) {
      var midnight = MIDNIGHT.exec(text);
      if (midnight) { return midnight[1]; }
      if (TIMESTAMP.test(text)) { return text.replace("T", " "); }
    }
    return text;
  }

  function kind(value, type) {
    if (value === null || value === undefined) { return "null"; }
    var c = typeClass(type);
    if (c === "integer" || c === "number") { return "num"; }
    if (c === "temporal") { return "date"; }
    if (c === "boolean" || typeof value === "boolean") { return "bool"; }
    if (c === "other" && !type && typeof value === "number") { return "num"; }
    return "text";
  }

  function isPair(text, i) {
    var c = text.charCodeAt(i);
    if (c < 0xD800 || c > 0xDBFF || i + 1 >= text.length) { return false; }
    var d = text.charCodeAt(i + 1);
    return d >= 0xDC00 && d <= 0xDFFF;
  }

  /* Characters as Python counts them (code points), not UTF-16 units. */
  function countChars(text) {
    var n = 0;
    for (var i = 0; i < text.length; i += isPair(text, i) ? 2 : 1) { n += 1; }
    return n;
  }

  /* {shown, total} when the text is too long for a cell, else null: cells.py cut(). */
  function cut(text) {
    var i = 0, n = 0, breaks = 0, end = -1;
    while (i < text.length && n < CUT_CHARS) {
      if (text.charCodeAt(i) === 10) {
        breaks += 1;
        if (breaks === CUT_LINES) { end = i; break; }
      }
      i += isPair(text, i) ? 2 : 1;
      n += 1;
    }
    if (end >= 0 && end < text.length - 1) { i = end; }
    else if (end >= 0) { return null; }
    if (i >= text.length) { return null; }
    return { shown: text.slice(0, i), total: countChars(text) };
  }

  function marker(total) {
    return "(cut, " + group(String(total)) + " characters)";
  }

  function span(className, text) {
    var node = document.createElement("span");
    node.className = className;
    node.textContent = text;
    return node;
  }

  function fill(td, value, type) {
    var text = format(value, type);
    var parts = cut(text);
    td.className = "cell-" + kind(value, type);
    if (!parts) {
      td.textContent = text;
      return td;
    }
    var details = document.createElement("details");
    details.className = "cell-cut";
    details.setAttribute("data-testid", "cell-cut");
    var summary = document.createElement("summary");
    summary.appendChild(span("cell-shown", parts.shown + "…"));
    summary.appendChild(document.createTextNode(" "));
    summary.appendChild(span("cell-marker", marker(parts.total)));
    var full = document.createElement("div");
    full.className = "cell-full";
    full.tabIndex = 0;
    full.textContent = text;
    details.appendChild(summary);
    details.appendChild(full);
    td.textContent = "";
    td.appendChild(details);
    return td;
  }

  window.MyappCells = {
    format: format, kind: kind, fill: fill, typeClass: typeClass, cut: cut, marker: marker
  };
})();
