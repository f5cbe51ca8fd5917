// Follow a running build's log: poll the page's log endpoint from the last byte seen and
// append what is new, until the build is done. The page works without this (reload it).
(function () {
  "use strict";
  var log = document.getElementById("log");
  if (!log || log.dataset.live !== "yes") return;
  var offset = parseInt(log.dataset.offset, 10) || 0;
  var state = document.getElementById("build-state");
  var done = ["succeeded", "failed", "cancelled"];
  function poll() {
    fetch(log.dataset.src + "?offset=" + offset, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (!response.ok) throw new Error(response.status);
        var size = parseInt(response.headers.get("X-Log-Size"), 10);
        var now = response.headers.get("X-Build-State");
        return response.text().then(function (text) {
          if (text) {
            log.appendChild(document.createTextNode(text)); // text, never HTML
            log.scrollTop = log.scrollHeight;
          }
          if (!isNaN(size)) offset = size;
          if (now && state) { state.textContent = now; state.className = "state " + now; }
          if (done.indexOf(now) === -1) setTimeout(poll, 700);
          else { var hint = document.getElementById("log-hint"); if (hint) hint.textContent = "The build " + now + "."; }
        });
      })
      .catch(function () { setTimeout(poll, 3000); });
  }
  setTimeout(poll, 500);
})();
