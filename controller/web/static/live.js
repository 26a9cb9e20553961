// Live updates without reloading the page: every few seconds, fetch this page's moving part
// (the same address with ?fragment=1) and swap it in if it changed. Paused while the tab is
// hidden, so a forgotten tab costs nothing. The server answers from a cache of a few seconds,
// so polling never multiplies storage transactions.
(function () {
  "use strict";
  function start(region) {
    var url = region.getAttribute("data-live");
    var every = parseInt(region.getAttribute("data-every"), 10) || 2000;
    var status = document.getElementById("live-status");
    var last = region.innerHTML;
    var busy = false;
    function say(text, cls) {
      if (status) { status.textContent = text; status.className = "live-status " + cls; }
    }
    function tick() {
      if (busy || document.hidden) { return; }
      busy = true;
      fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) {
          if (!r.ok) { throw new Error("HTTP " + r.status); }
          return r.text();
        })
        .then(function (html) {
          if (html !== last) { region.innerHTML = html; last = html; }
          say("live · updated " + new Date().toLocaleTimeString(), "ok");
        })
        .catch(function (e) { say("not updating: " + e.message, "down"); })
        .then(function () { busy = false; });
    }
    setInterval(tick, every);
  }
  document.addEventListener("DOMContentLoaded", function () {
    var regions = document.querySelectorAll("section[data-live]");
    for (var i = 0; i < regions.length; i++) { start(regions[i]); }
  });
})();
