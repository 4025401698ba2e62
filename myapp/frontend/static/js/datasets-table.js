// The table page: the filter builder's value box is not needed for "is empty" conditions, and
// the download menu closes after a choice, on a click elsewhere, or with Escape.
(function () {
  "use strict";
  var op = document.getElementById("add-op");
  var value = document.getElementById("add-value");
  var column = document.getElementById("add-column");
  if (op && column) {
    // Offer only the conditions that make sense for the chosen column's type (the server
    // refuses the others with a message; this spares the round trip).
    var allOps = Array.prototype.map.call(op.options, function (o) {
      return { value: o.value, text: o.textContent };
    });
    var offer = function () {
      var chosen = column.options[column.selectedIndex];
      var allowed = (chosen && chosen.getAttribute("data-ops") || "").split(" ");
      var current = op.value;
      op.textContent = "";
      allOps.forEach(function (o) {
        if (allowed.indexOf(o.value) < 0) { return; }
        var option = document.createElement("option");
        option.value = o.value;
        option.textContent = o.text;
        option.selected = o.value === current;
        op.appendChild(option);
      });
      if (value) {
        var type = chosen ? chosen.getAttribute("data-type") : "";
        value.placeholder = /DATE|TIME/.test(type) ? "e.g. 2024-03-09" : (/INT|FLOAT|DOUBLE|DECIMAL/.test(type) ? "a number" : "value");
      }
    };
    column.addEventListener("change", function () { offer(); if (sync) { sync(); } });
    offer();
  }
  var sync = null;
  if (op && value) {
    sync = function () {
      var none = op.value === "isnull" || op.value === "notnull";
      value.disabled = none;
      if (none) { value.placeholder = "no value needed"; }
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
