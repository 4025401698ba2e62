/* $name parameters: found in the SQL, a row (name, type, value) for each, and their values
   typed for the API. */
import { $, config } from "./state.js";
import { editor } from "./editor.js";

export const paramState = {};  // name -> {type, value}

export function parameterNames(sql) {
  // Leave out strings, quoted names and comments before looking for $name.
  const code = sql
    .replace(/\$([A-Za-z_][A-Za-z0-9_]*)?\$[\s\S]*?\$\1\$/g, " ")
    .replace(/'(?:[^']|'')*'/g, " ")
    .replace(/"(?:[^"]|"")*"/g, " ")
    .replace(/--[^\n]*/g, " ")
    .replace(/\/\*[\s\S]*?\*\//g, " ");
  const names = [];
  const re = /\$([A-Za-z_][A-Za-z0-9_]*)/g;
  let m;
  while ((m = re.exec(code))) {
    if (names.indexOf(m[1]) < 0) { names.push(m[1]); }
  }
  return names;
}

export function renderParams() {
  const names = parameterNames(editor.getValue());
  const box = $("param-rows");
  const fieldset = $("param-fields");
  const existing = {};
  box.querySelectorAll("[data-param]").forEach(function (row) {
    existing[row.getAttribute("data-param")] = row;
  });
  const current = Object.keys(existing).join(",");
  if (current === names.join(",")) { return; }
  box.textContent = "";
  names.forEach(function (n) {
    if (!paramState[n]) { paramState[n] = { type: "text", value: "" }; }
    box.appendChild(paramRow(n));
  });
  fieldset.hidden = names.length === 0;
}

function paramRow(n) {
  const state = paramState[n];
  const row = document.createElement("div");
  row.className = "param-row";
  row.setAttribute("data-param", n);
  const id = "param-" + n;
  const label = document.createElement("label");
  label.setAttribute("for", id);
  label.textContent = "$" + n;
  const type = document.createElement("select");
  type.setAttribute("aria-label", "Type of $" + n);
  type.setAttribute("data-testid", "param-type-" + n);
  config.parameter_types.forEach(function (t) {
    const option = document.createElement("option");
    option.value = t;
    option.textContent = t;
    option.selected = t === state.type;
    type.appendChild(option);
  });
  const holder = document.createElement("span");
  holder.className = "param-value";
  function input() {
    holder.textContent = "";
    let field;
    if (state.type === "boolean") {
      field = document.createElement("select");
      ["", "true", "false"].forEach(function (v) {
        const option = document.createElement("option");
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

export function typedValue(state) {
  const v = state.value === null || state.value === undefined ? "" : String(state.value);
  if (state.type === "text") { return v; }
  if (v === "") { return null; }
  if (state.type === "integer") { return /^[+-]?\d+$/.test(v.trim()) ? parseInt(v, 10) : v; }
  if (state.type === "number") { return isFinite(Number(v)) ? Number(v) : v; }
  if (state.type === "boolean") { return v === "true"; }
  return v;
}

export function currentParams() {
  const params = {};
  parameterNames(editor.getValue()).forEach(function (n) {
    const value = typedValue(paramState[n] || { type: "text", value: "" });
    if (value !== null) { params[n] = value; }
  });
  return params;
}
