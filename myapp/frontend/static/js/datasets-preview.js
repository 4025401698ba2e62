// Look before loading: the upload form's "Preview" sends the file (the raw body, with a
// progress bar) to be staged, and the server's preview is put in place. In the preview,
// changing a menu reads the file again; Load and Discard are sent the same way. Every form
// here is a plain form the server also answers with whole pages, so without this module the
// same steps work page by page.
const PARTIAL = { "X-Myapp-Partial": "1" };
const box = document.getElementById("upload-preview");
const uploadForm = document.getElementById("upload-form");

function say(text) {
  const status = document.getElementById("upload-status");
  if (status) {
    status.textContent = text;
  }
}

function refreshList() {
  const list = document.getElementById("dataset-list");
  if (!list) {
    return;
  }
  fetch(list.getAttribute("data-list-url")).then((response) => {
    if (response.ok) {
      return response.text().then((html) => {
        // Server-rendered and escaped by the template, like the rest of the page.
        list.innerHTML = html;
      });
    }
    return undefined;
  });
}

// Put a fragment the server rendered in place, keeping the keyboard where it was.
function show(html, kind) {
  const focused = document.activeElement && document.activeElement.id;
  box.innerHTML = html;
  const again = focused && document.getElementById(focused);
  if (again && box.contains(again)) {
    again.focus();
  } else {
    const heading = box.querySelector("h2, [tabindex='-1'], strong");
    if (heading && kind === "upload-preview") {
      heading.focus();
    }
  }
  if (kind === "upload-result") {
    refreshList();
  }
}

function answer(status, kind, html) {
  if (kind === "upload-preview" || kind === "upload-result") {
    show(html, kind);
    return true;
  }
  if (status === 204) {
    box.innerHTML = "";
    return true;
  }
  return false;
}

function stage(file) {
  const params = new URLSearchParams();
  params.set("filename", file.name);
  // The name and mode typed above travel too: the preview's load form starts with them.
  ["name", "mode", "format", "delimiter", "header", "encoding", "nullstr", "types", "sheet", "skip"].forEach((key) => {
    const field = uploadForm.elements[key];
    if (field && field.value) {
      params.set(key, field.value);
    }
  });
  const button = document.getElementById("upload-preview-button");
  const progress = document.getElementById("upload-progress");
  const bar = document.getElementById("upload-bar");
  const result = document.getElementById("upload-result");
  const xhr = new XMLHttpRequest();
  xhr.open("POST", button.getAttribute("data-preview-url") + "?" + params.toString());
  xhr.setRequestHeader("Content-Type", "application/octet-stream");
  xhr.setRequestHeader("X-Myapp-Partial", "1");
  xhr.upload.addEventListener("progress", (e) => {
    if (e.lengthComputable) {
      bar.value = Math.round((e.loaded / e.total) * 100);
      say("Sending " + bar.value + "%");
    }
  });
  xhr.upload.addEventListener("load", () => {
    bar.value = 100;
    say("Sent. Reading the file…");
  });
  const done = () => {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  };
  xhr.addEventListener("load", () => {
    done();
    const kind = xhr.getResponseHeader("X-Myapp-Fragment");
    if (kind === "upload-preview") {
      say("Here is how it would load; nothing is loaded yet.");
      show(xhr.responseText, kind);
    } else if (kind === "upload-result") {
      say("The preview failed: the file could not be read.");
      // Server-rendered and escaped by the template, like the rest of the page.
      result.innerHTML = xhr.responseText;
    } else {
      say("The server answered " + xhr.status + " " + xhr.statusText + ".");
    }
  });
  xhr.addEventListener("error", () => {
    done();
    say("The connection broke while sending the file. Try again.");
  });
  result.innerHTML = "";
  box.innerHTML = "";
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  progress.hidden = false;
  bar.value = 0;
  say("Starting…");
  xhr.send(file);
}

if (uploadForm) {
  uploadForm.addEventListener("submit", (event) => {
    const input = document.getElementById("upload-file");
    const file = input.files && input.files[0];
    if (!file || !event.submitter || !event.submitter.hasAttribute("data-preview-url")) {
      return;
    }
    event.preventDefault();
    const maxBytes = parseInt(uploadForm.getAttribute("data-max-bytes"), 10) || 0;
    if (maxBytes && file.size > maxBytes) {
      document.getElementById("upload-progress").hidden = false;
      say("This file is larger than the upload limit.");
      return;
    }
    stage(file);
  });
}

if (box) {
  box.addEventListener("submit", (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement)) {
      return;
    }
    event.preventDefault();
    const submitter = event.submitter;
    const target = (submitter && submitter.getAttribute("formaction")) || form.getAttribute("action");
    const body = new URLSearchParams(new FormData(form, submitter || undefined));
    const section = box.querySelector("section");
    if (section) {
      section.setAttribute("aria-busy", "true");
    }
    box.querySelectorAll("button").forEach((b) => {
      b.disabled = true;
    });
    fetch(target, { method: "POST", body, headers: PARTIAL })
      .then((response) =>
        response.text().then((html) => {
          if (!answer(response.status, response.headers.get("X-Myapp-Fragment"), html)) {
            box.textContent = "The server answered " + response.status + ". Reload the page and try again.";
          }
        }),
      )
      .catch(() => {
        if (section) {
          section.removeAttribute("aria-busy");
        }
        box.querySelectorAll("button").forEach((b) => {
          b.disabled = false;
        });
        say("The connection broke; try again.");
      });
  });

  // A different menu choice reads the file again at once; typed values wait for Apply.
  box.addEventListener("change", (event) => {
    const field = event.target;
    if (field instanceof HTMLSelectElement && field.form && field.form.id === "preview-options") {
      field.form.requestSubmit();
    }
  });
}
