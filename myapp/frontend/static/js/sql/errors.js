/* A failed run's message, and its position marked in the editor. */
import { $ } from "./state.js";
import { editor } from "./editor.js";

let errorMark = null;

export function showError(error) {
  $("sql-error-message").textContent = error.message;
  const detail = error.detail || {};
  const where = $("sql-error-where");
  const more = $("sql-error-detail");
  clearErrorMark();
  if (detail.line) {
    where.hidden = false;
    $("sql-error-position").textContent = "Line " + detail.line + ", column " + detail.column + ".";
    const from = { line: detail.line - 1, ch: detail.column - 1 };
    const to = { line: detail.line - 1, ch: detail.column - 1 + (detail.length || 1) };
    errorMark = editor.markText(from, to, { className: "cm-sql-error", attributes: { "data-testid": "error-mark" } });
    editor.addLineClass(from.line, "background", "cm-sql-error-line");
    errorMark.lineNumber = from.line;
    $("sql-error-goto").onclick = function () { editor.focus(); editor.setSelection(from, to); };
  } else {
    where.hidden = true;
  }
  const extra = detail.message && detail.message.indexOf("\n") >= 0 ? detail.message : "";
  more.textContent = extra;
  more.hidden = !extra;
  $("sql-error").hidden = false;
}

export function hideError() {
  $("sql-error").hidden = true;
  clearErrorMark();
}

export function clearErrorMark() {
  if (errorMark) {
    editor.removeLineClass(errorMark.lineNumber, "background", "cm-sql-error-line");
    errorMark.clear();
    errorMark = null;
  }
}
