/* Shared helpers of the control-center pages. Data is always inserted with textContent. */
(function () {
  "use strict";
  var meta = document.querySelector('meta[name="csrf-token"]');
  window.manyi = {
    /** The session's CSRF token, for fetch() POSTs (header X-CSRF-Token). */
    csrfToken: function () { return meta ? meta.getAttribute("content") : ""; },
    /** A new element with class and text (never HTML). */
    el: function (tag, cls, text) {
      var node = document.createElement(tag);
      if (cls) { node.className = cls; }
      if (text !== undefined && text !== null) { node.textContent = String(text); }
      return node;
    },
    /** "2026-11-23T09:31:05+08:00" -> "11-23 09:31:05". */
    shortTime: function (iso) { return iso ? iso.slice(5, 10) + " " + iso.slice(11, 19) : ""; }
  };
})();

/* Tables with class "js-sort": click a header to sort by that column (numbers and percentages as numbers). */
(function () {
  "use strict";
  function key(cell) {
    var text = (cell ? cell.textContent : "").trim();
    var num = parseFloat(text.replace(/[%,分次]/g, ""));
    return isNaN(num) || !/^[\d.\-]/.test(text) ? text : num;
  }
  document.querySelectorAll("table.js-sort").forEach(function (table) {
    var body = table.tBodies[0];
    Array.prototype.forEach.call(table.tHead ? table.tHead.rows[0].cells : [], function (th, index) {
      th.classList.add("sortable");
      th.title = "点击排序";
      th.addEventListener("click", function () {
        var asc = !th.classList.contains("sorted-asc");
        Array.prototype.forEach.call(th.parentNode.cells, function (c) { c.classList.remove("sorted-asc", "sorted-desc"); });
        th.classList.add(asc ? "sorted-asc" : "sorted-desc");
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = key(a.cells[index]), y = key(b.cells[index]);
          var cmp = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y), "zh-CN");
          return asc ? cmp : -cmp;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
})();

