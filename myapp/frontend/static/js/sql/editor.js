/* The CodeMirror editor with completion of dataset and column names. */
import { $, config } from "./state.js";

const tables = {};
config.datasets.forEach(function (d) {
  tables[d.name] = d.columns.map(function (c) { return c.name; });
});

export const editor = window.CodeMirror.fromTextArea($("sql-input"), {
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

/* Ctrl/Cmd-Enter runs `run`. */
export function onRunKey(run) {
  const keys = Object.assign({}, editor.getOption("extraKeys"), {
    "Ctrl-Enter": function () { run(); },
    "Cmd-Enter": function () { run(); }
  });
  editor.setOption("extraKeys", keys);
}

export function quoteName(text) {
  return /^[a-z_][a-z0-9_]*$/.test(text) ? text : '"' + text.replace(/"/g, '""') + '"';
}

document.querySelectorAll("[data-insert], [data-insert-table]").forEach(function (button) {
  button.addEventListener("click", function () {
    const text = button.getAttribute("data-insert") || button.getAttribute("data-insert-table");
    editor.replaceSelection(quoteName(text));
    editor.focus();
  });
});
