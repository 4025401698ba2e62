// The table page: the filter builder's value box is not needed for operators that take no
// value, and the download menu closes after a choice, on a click elsewhere, or with Escape.
// Operators and column-type classes come from the contract (base.html's JSON block and the
// options' data-ops/data-class). Facets not counted when the page was made are fetched after
// it, as the same block of HTML the server renders (without scripts, a link opens them).
(function () {
  "use strict";
  loadPendingFacets();
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

  function loadPendingFacets() {
    var box = document.getElementById("facet-lists");
    var src = box && box.getAttribute("data-facets-src");
    if (!src) { return; }
    var failed = function () {
      box.removeAttribute("aria-busy");
      box.querySelectorAll("[data-testid=facet-pending]").forEach(function (note) {
        note.textContent = "";
        var small = document.createElement("small");
        small.textContent = "The counts could not be loaded. ";
        var link = document.createElement("a");
        link.href = src;
        link.textContent = "Open them";
        small.appendChild(link);
        note.appendChild(small);
      });
    };
    fetch(src, { credentials: "same-origin", headers: { "X-Myapp-Fragment": "facets" } })
      .then(function (response) {
        // Anything but the block itself (a sign-in page after a redirect, an error page)
        // is not put into this page.
        if (!response.ok || response.headers.get("X-Myapp-Fragment") !== "facets") {
          failed();
          return;
        }
        return response.text().then(function (html) {
          var holder = document.createElement("template");
          holder.innerHTML = html;
          var fresh = holder.content.getElementById("facet-lists");
          if (!fresh) { failed(); return; }
          box.replaceWith(fresh);
        });
      })
      .catch(failed);
  }
})();
