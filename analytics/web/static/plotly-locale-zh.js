/* Simplified Chinese for plotly's own texts (tool bar, date axes), after plotly.js's zh-CN locale.
   The plotly Python package ships no locale files, so the few strings the pages show are here. */
(function () {
  "use strict";
  if (typeof Plotly === "undefined") { return; }
  Plotly.register({
    moduleType: "locale",
    name: "zh-CN",
    dictionary: {
      "Autoscale": "自动缩放", "Box Select": "矩形框选择", "Click to enter Colorscale title": "点击输入色阶标题",
      "Compare data on hover": "悬停时比较数据", "Double-click to zoom back out": "双击返回缩小显示",
      "Download plot": "下载图表", "Download plot as a png": "下载图表为PNG格式", "Download plot as a PNG": "下载图表为PNG格式", "Edit in Chart Studio": "在 Chart Studio 中编辑",
      "Lasso Select": "套索选择", "Orbital rotation": "轨道旋转", "Pan": "平移", "Produced with Plotly.js": "由Plotly.js生成",
      "Reset": "重置", "Reset axes": "重置轴", "Reset view": "重置视图", "Show closest data on hover": "悬停时显示最近的数据",
      "Snapshot succeeded": "生成快照成功", "Sorry, there was a problem downloading your snapshot!": "抱歉，下载快照出现问题！",
      "Taking snapshot - this may take a few seconds": "正在生成快照 - 可能需要几秒钟",
      "Toggle Spike Lines": "启用/禁用尖峰线", "Toggle show closest data on hover": "启用/禁用悬停时显示最近的数据",
      "Turntable rotation": "转盘旋转", "Zoom": "缩放", "Zoom in": "放大", "Zoom out": "缩小"
    },
    format: {
      days: ["星期日", "星期一", "星期二", "星期三", "星期四", "星期五", "星期六"],
      shortDays: ["周日", "周一", "周二", "周三", "周四", "周五", "周六"],
      months: ["一月", "二月", "三月", "四月", "五月", "六月", "七月", "八月", "九月", "十月", "十一月", "十二月"],
      shortMonths: ["1月", "2月", "3月", "4月", "5月", "6月", "7月", "8月", "9月", "10月", "11月", "12月"],
      date: "%Y-%m-%d"
    }
  });
})();
