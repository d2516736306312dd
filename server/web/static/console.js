// Keyboard shortcuts of the case page. Never a decision by itself: S / D only select an option and
// move to the reason; recording still takes the confirmation page.
(function () {
  "use strict";
  function typing(el) {
    return el && (el.tagName === "INPUT" || el.tagName === "TEXTAREA" || el.tagName === "SELECT" || el.isContentEditable);
  }
  document.addEventListener("keydown", function (ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey || typing(document.activeElement)) { return; }
    var key = ev.key.toLowerCase();
    var pick = { s: "decision-same", d: "decision-distinct" }[key];
    if (pick && document.getElementById(pick)) {
      document.getElementById(pick).checked = true;
      document.getElementById("reason").focus();
      ev.preventDefault();
      return;
    }
    if (key === "n" && document.getElementById("next-case")) {
      window.location.href = document.getElementById("next-case").href;
      return;
    }
    if (key === "j" || key === "k") {
      var links = document.querySelectorAll(".cands a");
      var current = -1;
      links.forEach(function (a, i) { if (a.hasAttribute("aria-current")) { current = i; } });
      var next = current + (key === "j" ? 1 : -1);
      if (next >= 0 && next < links.length) { window.location.href = links[next].href; }
    }
  });
}());
