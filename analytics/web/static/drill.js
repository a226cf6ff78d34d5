// Drill-down: draw the figures the server built (JSON in data-figure attributes).
(function () {
  "use strict";
  if (typeof Plotly === "undefined") { return; }
  document.querySelectorAll("[data-figure]").forEach(function (el) {
    var fig;
    try { fig = JSON.parse(el.dataset.figure); } catch (e) { el.textContent = "图表数据无效"; return; }
    var empty = !fig.data || fig.data.every(function (t) {
      var v = t.values || t.y || t.z || [];
      return !v.length;
    });
    if (empty) { el.textContent = "该时间范围内暂无评价"; el.classList.add("chart-empty"); return; }
    Plotly.newPlot(el, fig.data, fig.layout, {
      responsive: true, displaylogo: false, locale: "zh-CN",
      showSendToCloud: false, plotlyServerURL: "",   // plotly.js 3 would offer to upload the chart to cloud.plotly.com
      modeBarButtonsToRemove: ["select2d", "lasso2d", "autoScale2d", "toggleSpikelines"]
    });
  });
})();
