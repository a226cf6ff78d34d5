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
