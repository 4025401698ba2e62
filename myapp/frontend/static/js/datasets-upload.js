// The upload form: choose or drop a file, send it as the raw body of a PUT with a real
// progress bar (XHR upload events), then show the server's summary and refresh the list.
// Without this script the form still works: it posts multipart to the same page.
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  if (!form) {
    return;
  }
  var input = document.getElementById("upload-file");
  var zone = document.getElementById("dropzone");
  var zoneText = zone.querySelector(".dropzone-text");
  var submit = document.getElementById("upload-submit");
  var box = document.getElementById("upload-progress");
  var bar = document.getElementById("upload-bar");
  var status = document.getElementById("upload-status");
  var result = document.getElementById("upload-result");
  var list = document.getElementById("dataset-list");
  var maxBytes = parseInt(form.getAttribute("data-max-bytes"), 10) || 0;
  var OPTIONS = ["name", "mode", "format", "delimiter", "header", "encoding", "nullstr", "types", "sheet", "skip"];

  function size(bytes) {
    var units = ["bytes", "KB", "MB", "GB", "TB"];
    var i = 0;
    while (bytes >= 1000 && i < units.length - 1) {
      bytes /= 1000;
      i += 1;
    }
    return (i === 0 ? bytes : bytes.toFixed(1)) + " " + units[i];
  }

  function showChosen() {
    var file = input.files && input.files[0];
    zoneText.textContent = file ? file.name + " (" + size(file.size) + ")" : "Choose a file or drop it here";
  }

  function say(text) {
    status.textContent = text;
  }

  input.addEventListener("change", showChosen);
  ["dragenter", "dragover"].forEach(function (type) {
    zone.addEventListener(type, function (event) {
      event.preventDefault();
      zone.classList.add("dragging");
    });
  });
  ["dragleave", "drop"].forEach(function (type) {
    zone.addEventListener(type, function () {
      zone.classList.remove("dragging");
    });
  });
  zone.addEventListener("drop", function (event) {
    event.preventDefault();
    if (event.dataTransfer && event.dataTransfer.files.length) {
      input.files = event.dataTransfer.files;
      showChosen();
    }
  });

  function refreshList() {
    if (!list) {
      return;
    }
    var xhr = new XMLHttpRequest();
    xhr.open("GET", list.getAttribute("data-list-url"));
    xhr.onload = function () {
      if (xhr.status === 200) {
        // Server-rendered and escaped by the template, like the rest of the page.
        list.innerHTML = xhr.responseText;
      }
    };
    xhr.send();
  }

  form.addEventListener("submit", function (event) {
    var file = input.files && input.files[0];
    if (!file || (event.submitter && event.submitter.hasAttribute("data-preview-url"))) {
      // The preview button belongs to datasets-preview.js.
      return;
    }
    event.preventDefault();
    result.innerHTML = "";
    if (maxBytes && file.size > maxBytes) {
      box.hidden = false;
      say("This file is " + size(file.size) + "; the upload limit is " + size(maxBytes) + ".");
      return;
    }
    var params = new URLSearchParams();
    params.set("filename", file.name);
    OPTIONS.forEach(function (key) {
      var field = form.elements[key];
      if (field && field.value) {
        params.set(key, field.value);
      }
    });
    var xhr = new XMLHttpRequest();
    xhr.open("PUT", form.getAttribute("data-upload-url") + "?" + params.toString());
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.upload.addEventListener("progress", function (e) {
      if (e.lengthComputable) {
        bar.value = Math.round((e.loaded / e.total) * 100);
        say("Sending " + size(e.loaded) + " of " + size(e.total) + " (" + bar.value + "%)");
      }
    });
    xhr.upload.addEventListener("load", function () {
      bar.value = 100;
      say("Sent. Loading into the database…");
    });
    xhr.addEventListener("load", function () {
      submit.disabled = false;
      submit.removeAttribute("aria-busy");
      if (xhr.getResponseHeader("X-Myapp-Fragment") === "upload-result") {
        // Server-rendered and escaped by the template, like the rest of the page.
        result.innerHTML = xhr.responseText;
      } else {
        result.textContent = "The server answered " + xhr.status + " " + xhr.statusText + ".";
      }
      if (xhr.status === 201) {
        say("Done.");
        form.reset();
        showChosen();
        refreshList();
      } else {
        say("The upload failed.");
      }
    });
    xhr.addEventListener("error", function () {
      submit.disabled = false;
      submit.removeAttribute("aria-busy");
      say("The connection broke during the upload; nothing was loaded. Try again.");
    });
    submit.disabled = true;
    submit.setAttribute("aria-busy", "true");
    box.hidden = false;
    bar.value = 0;
    say("Starting…");
    xhr.send(file);
  });
})();
