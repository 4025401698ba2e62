// The table page: the filter builder's value box is not needed for "is empty" conditions, and
// the download menu closes after a choice, on a click elsewhere, or with Escape.
(function () {
  "use strict";
  var op = document.getElementById("add-op");
  var value = document.getElementById("add-value");
  if (op && value) {
    var sync = function () {
      var none = op.value === "isnull" || op.value === "notnull";
      value.disabled = none;
      value.placeholder = none ? "no value needed" : "value";
    };
    op.addEventListener("change", sync);
    sync();
  }

  var menus = Array.prototype.slice.call(document.querySelectorAll("details.dropdown"));
  menus.forEach(function (menu) {
    menu.querySelectorAll("a").forEach(function (link) {
      link.addEventListener("click", function () {
        menu.removeAttribute("open");
      });
    });
  });
  document.addEventListener("click", function (event) {
    menus.forEach(function (menu) {
      if (menu.open && !menu.contains(event.target)) {
        menu.removeAttribute("open");
      }
    });
  });
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") {
      return;
    }
    menus.forEach(function (menu) {
      if (menu.open) {
        menu.removeAttribute("open");
        menu.querySelector("summary").focus();
      }
    });
  });
})();
