// supportopsd console: optional niceties only; every page works without this file.
// 1. <time datetime="…"> elements are shown in the browser's time zone.
// 2. Buttons and forms marked data-confirm ask before they submit.
(function () {
  "use strict";
  var fmt;
  try {
    fmt = new Intl.DateTimeFormat(undefined, {
      year: "numeric", month: "short", day: "numeric",
      hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short"
    });
  } catch (e) { fmt = null; }
  var times = document.querySelectorAll("time[datetime]");
  for (var i = 0; i < times.length; i++) {
    var t = times[i];
    var d = new Date(t.getAttribute("datetime"));
    if (isNaN(d.getTime())) { continue; }
    t.title = t.getAttribute("datetime");
    t.textContent = fmt ? fmt.format(d) : d.toLocaleString();
  }
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    var asker = ev.submitter && ev.submitter.hasAttribute("data-confirm") ? ev.submitter : form;
    var question = asker && asker.getAttribute ? asker.getAttribute("data-confirm") : null;
    if (question && !window.confirm(question)) { ev.preventDefault(); }
  });
})();
