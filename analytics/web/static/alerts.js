// Live alert list: poll /api/v1/alerts?after=<last id> every 5 s and add new rows on top.
// Every text from the server goes in with textContent (names come from imported files).
(function () {
  "use strict";
  var table = document.getElementById("alert-table");
  if (!table) { return; }
  var body = table.querySelector("tbody");
  var status = document.getElementById("alerts-status");
  var lastId = parseInt(table.dataset.lastId || "0", 10);

  function cell(row, text) {
    var td = document.createElement("td");
    td.textContent = text == null ? "" : String(text);
    row.appendChild(td);
    return td;
  }

  function localTime(iso) {
    var d = new Date(iso);
    if (isNaN(d.getTime())) { return iso; }
    return d.toLocaleString("zh-CN", { hour12: false });
  }

  function ackButton(td, alert) {
    var button = document.createElement("button");
    button.type = "button";
    button.textContent = "确认";
    button.addEventListener("click", function () {
      fetch("/api/v1/alerts/" + alert.id + "/ack", {
        method: "POST", credentials: "same-origin",
        headers: { "X-CSRF-Token": table.dataset.csrf }
      }).then(function (r) { return r.json(); }).then(function (a) {
        td.textContent = "已确认（" + (a.ack_by || "") + "）";
        td.parentNode.classList.add("acked");
      });
    });
    td.appendChild(button);
  }

  function addRow(alert) {
    var empty = body.querySelector("tr.empty");
    if (empty) { empty.remove(); }
    var row = document.createElement("tr");
    row.className = "alert-new";
    row.dataset.alert = alert.id;
    cell(row, alert.id);
    cell(row, localTime(alert.created_at));
    cell(row, alert.rule_name);
    cell(row, alert.scope_name);
    cell(row, alert.message);
    var td = cell(row, "");
    if (alert.ack_at) { td.textContent = "已确认（" + (alert.ack_by || "") + "）"; } else { ackButton(td, alert); }
    body.insertBefore(row, body.firstChild);
  }

  function poll() {
    fetch(table.dataset.api + "?after=" + lastId, { credentials: "same-origin" })
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.json(); })
      .then(function (data) {
        data.alerts.slice().reverse().forEach(addRow);
        lastId = Math.max(lastId, data.last_id || 0);
        if (status) { status.textContent = "最近更新 " + new Date().toLocaleTimeString("zh-CN", { hour12: false }); }
      })
      .catch(function () { if (status) { status.textContent = "连接中断，稍后重试"; } });
  }
  setInterval(poll, 5000);
})();
