/* Running a query: its id (so it can be followed and cancelled), progress while it runs, a
   Cancel button after a moment, and the answer or the error. */
import { $, state, urls } from "./state.js";
import { getJSON, postJSON } from "../http.js";
import { editor } from "./editor.js";
import { currentParams } from "./params.js";
import { hideError, showError } from "./errors.js";
import { clearResults, rememberInAddress, showResults } from "./results.js";
import { remember } from "./history.js";

const POLL_MS = 500;
const SHOW_CANCEL_AFTER_MS = 300;

const runButton = $("run-button");
const cancelButton = $("cancel-button");
const statusLine = $("run-status");
const progress = $("run-progress");

function uuid4() {
  if (window.crypto && window.crypto.randomUUID) { return window.crypto.randomUUID(); }
  const b = window.crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.prototype.map.call(b, function (x) { return (x + 0x100).toString(16).slice(1); }).join("");
  return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
}

function seconds(ms) { return (ms / 1000).toFixed(1) + " s"; }

export function run() {
  if (state.running) { return; }
  editor.save();
  const sql = editor.getValue();
  if (!sql.trim()) {
    showError({ message: "Write a query first." });
    return;
  }
  const params = currentParams();
  const id = uuid4();
  hideError();
  const running = { id: id, started: performance.now() };
  state.running = running;
  runButton.setAttribute("aria-busy", "true");
  runButton.disabled = true;
  statusLine.textContent = "Running…";
  running.cancelTimer = setTimeout(function () {
    cancelButton.hidden = false;
    progress.hidden = false;
    progress.removeAttribute("value");
  }, SHOW_CANCEL_AFTER_MS);
  running.pollTimer = setTimeout(poll, POLL_MS);
  const limit = parseInt($("row-limit").value, 10);
  postJSON(urls.run, { sql: sql, params: params, limit: limit, id: id })
    .then(function (answer) {
      stopRunning();
      if (answer.ok) {
        state.lastRun = { sql: sql, params: params, result: answer.body };
        showResults(answer.body);
        rememberInAddress(sql);
        remember({ sql: sql, rows: answer.body.row_count, ms: answer.body.elapsed_ms, ok: true });
      } else {
        const error = (answer.body && answer.body.error) || { message: "The query failed." };
        clearResults();
        showError(error);
        statusLine.textContent = error.code === "query_cancelled"
          ? "Cancelled after " + seconds(performance.now() - running.started) + "."
          : "The query failed.";
        remember({ sql: sql, ok: false });
      }
    });
}

function stopRunning() {
  const running = state.running;
  if (!running) { return; }
  clearTimeout(running.pollTimer);
  clearTimeout(running.cancelTimer);
  state.running = null;
  runButton.removeAttribute("aria-busy");
  runButton.disabled = false;
  cancelButton.hidden = true;
  cancelButton.disabled = false;
  progress.hidden = true;
}

function poll() {
  const current = state.running;
  if (!current) { return; }
  getJSON(urls.status.replace("QUERY_ID", current.id))
    .then(function (answer) {
      if (state.running !== current) { return; }
      if (answer.ok && answer.body.state === "running") {
        const elapsed = seconds(performance.now() - current.started);
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
      if (state.running === current) { current.pollTimer = setTimeout(poll, POLL_MS); }
    });
}

export function cancel() {
  if (!state.running) { return; }
  cancelButton.disabled = true;
  statusLine.textContent = "Cancelling…";
  postJSON(urls.cancel.replace("QUERY_ID", state.running.id), {});
}

cancelButton.addEventListener("click", cancel);
