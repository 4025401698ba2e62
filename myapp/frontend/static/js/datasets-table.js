// The table page: the filter builder's value box is not needed for operators that take no
// value, and the download menu closes after a choice, on a click elsewhere, or with Escape.
// Operators and column-type classes come from the contract (base.html's JSON block and the
// options' data-ops/data-class).
(function () {
  "use strict";
  var contract = JSON.parse(document.getElementById("myapp-contract").textContent);
  var valueless = contract.operators.filter(function (o) { return !o.takes_value; }).map(function (o) { return o.key; });
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
        var cls = chosen ? chosen.getAttribute("data-class") : "";
        value.placeholder = cls === "temporal" ? "e.g. 2024-03-09" : (cls === "integer" || cls === "number" ? "a number" : "value");
      }
    };
    column.addEventListener("change", function () { offer(); if (sync) { sync(); } });
    offer();
  }
  var sync = null;
  if (op && value) {
    sync = function () {
      var none = valueless.indexOf(op.value) >= 0;
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
