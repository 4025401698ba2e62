/* The one way pages' scripts call their JSON endpoints (the page's own URLs, which relay the
   backend's API): same-origin, JSON in and out. Every call settles to
   {ok, status, headers, body}; a failed call's body is always the API's error shape
   {error: {code, message, detail?}}, whether the server sent one, sent something else, or
   could not be reached (status 0), so callers have one path for every failure. */

const UNREACHABLE = "The server could not be reached; check your connection and try again.";

export function readJSON(response) {
  return response.text().then(function (text) {
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch (e) { body = null; }
    if (!response.ok && !(body && body.error)) {
      body = { error: { code: "http_" + response.status, message: "The server answered " + response.status + "; try again in a moment." } };
    }
    return { ok: response.ok, status: response.status, headers: response.headers, body: body };
  });
}

function unreachable() {
  return { ok: false, status: 0, headers: new Headers(), body: { error: { code: "unreachable", message: UNREACHABLE } } };
}

export function requestJSON(method, url, body) {
  const init = { method: method, credentials: "same-origin", headers: { "Accept": "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  return fetch(url, init).then(readJSON).catch(unreachable);
}

export function getJSON(url) { return requestJSON("GET", url); }

export function postJSON(url, body) { return requestJSON("POST", url, body === undefined ? {} : body); }
