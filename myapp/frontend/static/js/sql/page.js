/* The SQL page: CodeMirror editor with completion, run with progress and cancel, results with
   types, errors marked in the editor, the chart panel, exports, session history and saving,
   one module each under js/sql/. Every request goes to the page's own /sql/… URLs (see
   views/sql.py) through js/http.js. This module wires the editor to the others and starts. */
import { $, config, state } from "./state.js";
import { editor, onRunKey } from "./editor.js";
import { paramState, renderParams } from "./params.js";
import { clearErrorMark } from "./errors.js";
import { run } from "./run.js";
import { renderHistory } from "./history.js";
import "./save.js";

onRunKey(run);
let paramTimer = null;
editor.on("change", function () {
  editor.save();  // the textarea always holds what the editor shows
  clearErrorMark();
  clearTimeout(paramTimer);
  paramTimer = setTimeout(renderParams, 250);
});
$("sql-form").addEventListener("submit", function (event) {
  event.preventDefault();
  run();
});

if (state.saved) {
  state.saved.parameters.forEach(function (p) {
    paramState[p.name] = { type: p.type, value: p.default === null ? "" : String(p.default) };
  });
}
const address = config.address || { params: {}, types: {} };
Object.keys(address.params || {}).forEach(function (n) {
  paramState[n] = { type: (address.types || {})[n] || "text", value: address.params[n] };
});
renderParams();
renderHistory();
editor.focus();
editor.setCursor(editor.lineCount(), 0);
if (address.run) { run(); }
