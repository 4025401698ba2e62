/* Every page: the header's menu and the table page's facets are <details> that CSS shows open
   on wide screens (::details-content); browsers without that get them opened here, so the
   page works the same, and phones keep them folded. */
(function () {
  "use strict";
  var wide = window.matchMedia("(min-width: 801px)");
  if (window.CSS && CSS.supports && CSS.supports("selector(::details-content)")) { return; }
  function sync() {
    document.querySelectorAll("details.nav-menu, details.facets-box").forEach(function (box) {
      box.open = wide.matches;
    });
  }
  sync();
  wide.addEventListener("change", sync);
})();
