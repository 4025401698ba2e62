/* What the SQL page's modules share: the page's config block, its URLs and the state of the
   session (the saved query being edited, the last successful run, the run in progress, the
   chart last drawn). */

export const config = JSON.parse(document.getElementById("sql-config").textContent);
export const urls = config.urls;
export const $ = function (id) { return document.getElementById(id); };

export const state = {
  saved: config.saved,   // the saved query being edited, if any
  lastRun: null,         // {sql, params, result} of the last successful run
  running: null,         // {id, started, pollTimer, cancelTimer}
  chartState: null       // {config} of the chart last drawn
};
