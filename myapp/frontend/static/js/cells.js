/* How a value from the API reads in a table cell, for tables drawn in the browser. The same rule
   as myapp/frontend/cells.py (server-rendered tables); read the reasons there. Exposes
   window.MyappCells = {format(value, type), kind(value, type), fill(td, value, type)}. */
(function () {
  "use strict";

  var SIGNIFICANT = 15;
  var PLAIN_MIN = 1e-6;
  var PLAIN_MAX = 1e15;
  var INTEGER = /^U?(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT)$/;
  var NUMBER = /^(FLOAT|DOUBLE|DECIMAL(\(\d+, ?\d+\))?|U?(TINY|SMALL|BIG|HUGE)?INT(EGER)?)$/;
  var TEMPORAL = /^(DATE|TIME|TIMESTAMP|TIMESTAMP_[A-Z]+|(TIME|TIMESTAMP) WITH TIME ZONE)$/;
  var NUMERIC_TEXT = /^([+-]?)(\d+)(\.\d+)?$/;
  var MIDNIGHT = /^(\d{4,}-\d\d-\d\d)T00:00:00(\.0+)?(Z|[+-]00:?00)?$/;
  var TIMESTAMP = /^(\d{4,}-\d\d-\d\d)T(\d\d:\d\d)/;

  function typeClass(type) {
    var t = String(type || "").toUpperCase();
    if (INTEGER.test(t)) { return "integer"; }
    if (NUMBER.test(t)) { return "number"; }
    if (TEMPORAL.test(t)) { return "temporal"; }
    if (t === "BOOLEAN") { return "boolean"; }
    if (t === "VARCHAR") { return "text"; }
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

  function fill(td, value, type) {
    td.textContent = format(value, type);
    td.className = "cell-" + kind(value, type);
    return td;
  }

  window.MyappCells = { format: format, kind: kind, fill: fill, typeClass: typeClass };
})();
