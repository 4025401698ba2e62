/* The session's history of runs (sessionStorage), newest first. */
import { $ } from "./state.js";
import { editor } from "./editor.js";

const HISTORY_KEY = "myapp.sql.history";
const HISTORY_SIZE = 25;

function history() {
  try { return JSON.parse(sessionStorage.getItem(HISTORY_KEY) || "[]"); } catch (e) { return []; }
}

export function remember(entry) {
  entry.at = new Date().toISOString();
  const list = history().filter(function (h) { return h.sql !== entry.sql; });
  list.unshift(entry);
  try { sessionStorage.setItem(HISTORY_KEY, JSON.stringify(list.slice(0, HISTORY_SIZE))); } catch (e) { /* full or disabled */ }
  renderHistory();
}

export function renderHistory() {
  const list = $("history-list");
  const items = history();
  list.textContent = "";
  $("history-empty").hidden = items.length > 0;
  items.forEach(function (h) {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "outline secondary history-item";
    const first = h.sql.trim().split("\n")[0];
    button.textContent = first.length > 90 ? first.slice(0, 90) + "…" : first;
    button.title = "Put this query back in the editor";
    button.addEventListener("click", function () { editor.setValue(h.sql); editor.focus(); });
    const meta = document.createElement("small");
    const time = new Date(h.at).toLocaleTimeString();
    const rows = h.ok ? h.rows.toLocaleString() + (h.rows === 1 ? " row · " : " rows · ") : "failed · ";
    meta.textContent = " " + rows + time;
    li.appendChild(button);
    li.appendChild(meta);
    list.appendChild(li);
  });
}
