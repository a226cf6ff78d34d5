// Drill-down: draw the figures the server built (JSON in data-figure attributes).
(function () {
  "use strict";
  if (typeof Plotly === "undefined") { return; }
  document.querySelectorAll("[data-figure]").forEach(function (el) {
    var fig;
    try { fig = JSON.parse(el.dataset.figure); } catch (e) { el.textContent = "图表数据无效"; return; }
    Plotly.newPlot(el, fig.data, fig.layout, { responsive: true, displaylogo: false, locale: "zh-CN" });
  });
})();
