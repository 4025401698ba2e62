/* Saving the editor's query (with its parameters' types and defaults, and the chart if asked)
   as a saved query or a new version of the one being edited. */
import { $, state, urls } from "./state.js";
import { postJSON } from "../http.js";
import { editor } from "./editor.js";
import { paramState, parameterNames, typedValue } from "./params.js";

const dialog = $("save-dialog");
const saveButton = $("save-button");

function showSaveError(error) {
  const box = $("save-error");
  box.textContent = error.message;
  if (error.code === "title_exists" && error.detail && error.detail.slug) {
    box.appendChild(document.createTextNode(" "));
    const open = document.createElement("a");
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
}

function showSaved(saved) {
  const status = $("save-status");
  status.textContent = "Saved as ";
  const link = document.createElement("a");
  link.href = urls.query_page.replace("SLUG", encodeURIComponent(saved.slug));
  link.textContent = saved.title;
  link.setAttribute("data-testid", "saved-link");
  status.appendChild(link);
  status.appendChild(document.createTextNode(" (version " + saved.version + ")."));
  if (saveButton) { saveButton.textContent = "Save as version " + (saved.latest_version + 1) + "…"; }
}

if (saveButton) {
  saveButton.addEventListener("click", function () {
    $("save-error").hidden = true;
    $("save-chart-label").hidden = !(state.chartState || (state.saved && state.saved.chart));
    dialog.showModal();
    $("save-title").focus();
  });
}
$("save-cancel").addEventListener("click", function () { dialog.close(); });
$("save-form").addEventListener("submit", function (event) {
  event.preventDefault();
  editor.save();
  const saved = state.saved;
  const asNew = $("save-as-new") && $("save-as-new").checked;
  const names = parameterNames(editor.getValue());
  const keepChart = $("save-chart").checked && !$("save-chart-label").hidden;
  const body = {
    title: $("save-title").value,
    description: $("save-description").value,
    sql: editor.getValue(),
    parameters: names.map(function (n) {
      const param = paramState[n] || { type: "text", value: "" };
      const value = typedValue(param);
      return { name: n, type: param.type, default: value === "" && param.type !== "text" ? null : value };
    }),
    chart: keepChart ? (state.chartState ? state.chartState.config : saved.chart) : null
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
      showSaveError(answer.body.error);
      return;
    }
    $("save-title").removeAttribute("aria-invalid");
    dialog.close();
    state.saved = answer.body;
    showSaved(state.saved);
  });
});
