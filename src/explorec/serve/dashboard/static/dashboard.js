// explorec dashboard: draw every chart from its inert JSON block (no inline scripts: the
// pages' Content-Security-Policy allows scripts from /dashboard/static only).
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var nodes = document.querySelectorAll("[data-figure]");
  for (var i = 0; i < nodes.length; i++) {
    var el = nodes[i];
    var src = document.getElementById(el.getAttribute("data-figure"));
    if (!src) { continue; }
    var fig = JSON.parse(src.textContent);
    window.Plotly.newPlot(el, fig.data, fig.layout, {displaylogo: false, responsive: true, displayModeBar: false})
      .then(function (gd) { gd.setAttribute("data-rendered", "1"); });
  }
  var win = document.getElementById("window");
  if (win && win.form) {
    win.addEventListener("change", function () { win.form.submit(); });
  }
});
