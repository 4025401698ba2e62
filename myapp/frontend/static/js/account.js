// The token page: select the token on focus, and copy it with one click where the browser
// allows the clipboard (HTTPS or localhost); the button stays hidden elsewhere.
(function () {
  "use strict";
  var field = document.getElementById("new-token");
  if (field) {
    field.addEventListener("focus", function () { field.select(); });
  }
  var button = document.getElementById("copy-token");
  if (!button || !field || !navigator.clipboard || !window.isSecureContext) {
    return;
  }
  button.hidden = false;
  button.addEventListener("click", function () {
    navigator.clipboard.writeText(field.value).then(function () {
      button.textContent = "Copied";
    }, function () {
      field.select();
      button.textContent = "Press Ctrl+C to copy";
    });
  });
})();
