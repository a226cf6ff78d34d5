/* Live map page: draws the county map, keeps the vote ticker current through Server-Sent Events,
   signals unsatisfied votes, and redraws the map a few seconds after new votes. */
(function () {
  "use strict";
  var root = document.getElementById("live");
  if (!root) { return; }
  var el = window.manyi.el, shortTime = window.manyi.shortTime;
  var period = root.getAttribute("data-period") || "today";
  var mapDiv = document.getElementById("map");
  var ticker = document.getElementById("ticker");
  var banner = document.getElementById("alert-banner");
  var streamState = document.getElementById("stream-state");
  var mapStatus = document.getElementById("map-status");
  var MAX_ITEMS = 60, REDRAW_DELAY = 4000;
  var cursor = null, redrawTimer = null, drawn = false, source = null;

  var bannerText = document.getElementById("alert-banner-text");
  var bannerClose = document.getElementById("alert-banner-close");
  var unsatisfiedCount = document.getElementById("unsatisfied-count");
  var unsatisfiedSeen = 0;

  function fmtPct(x) { return x === null || x === undefined ? "—" : (100 * x).toFixed(1) + "%"; }
  function fmtNum(x) { return x === null || x === undefined ? "—" : Number(x).toFixed(1); }

  /** The drill-down URL of a clicked map point: the last customdata item (see analytics.charts.drill_url). */
  function clickTarget(pt) {
    var data = pt && pt.customdata;
    var url = data && data.length ? data[data.length - 1] : null;
    if (typeof url === "string" && url.indexOf("/drill/") === 0) { return url; }
    return pt && pt.location ? "/drill/county/" + encodeURIComponent(pt.location) : null;
  }

  function fillTable(counties) {
    var body = document.querySelector("#county-table tbody");
    while (body.firstChild) { body.removeChild(body.firstChild); }
    counties.forEach(function (c) {
      var tr = el("tr");
      var link = el("a", null, c.name);
      link.href = "/drill/county/" + encodeURIComponent(c.code);
      var td = el("td"); td.appendChild(link); tr.appendChild(td);
      [c.n, c.satisfied, c.basic, c.unsatisfied, fmtPct(c.rate), fmtNum(c.score)].forEach(function (v) {
        tr.appendChild(el("td", "num", v));
      });
      if (!c.n) { tr.className = "no-data"; }
      body.appendChild(tr);
    });
  }

  function drawMap() {
    mapStatus.textContent = "加载中…";
    return fetch("/api/v1/map?period=" + encodeURIComponent(period), { credentials: "same-origin" })
      .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.json(); })
      .then(function (data) {
        var config = { displaylogo: false, responsive: true, topojsonURL: "/assets/topojson/", locale: "zh-CN",
                       showSendToCloud: false, plotlyServerURL: "",   // plotly.js 3 would offer to upload to cloud.plotly.com
                       modeBarButtonsToRemove: ["select2d", "lasso2d"] };
        var fig = data.figure;
        var p = drawn ? Plotly.react(mapDiv, fig.data, fig.layout, config)
                      : Plotly.newPlot(mapDiv, fig.data, fig.layout, config);
        return p.then(function () {
          if (!drawn) {
            mapDiv.on("plotly_click", function (ev) {
              var url = clickTarget(ev.points && ev.points[0]);
              if (url) { window.location.href = url; }
            });
          }
          drawn = true;
          fillTable(data.counties);
          mapStatus.textContent = data.period_label + " · 更新于 " + shortTime(data.generated_at);
          mapDiv.setAttribute("data-drawn", "1");
        });
      })
      .catch(function (err) { mapStatus.textContent = "地图加载失败：" + err.message; });
  }

  function scheduleRedraw() {
    if (redrawTimer) { return; }
    redrawTimer = setTimeout(function () { redrawTimer = null; drawMap(); }, REDRAW_DELAY);
  }

  // Sound: browsers only play audio after a click on the page, so the wall screen has a toggle
  // (remembered in localStorage); one AudioContext is reused (browsers cap how many a page may open).
  var soundButton = document.getElementById("sound-toggle");
  var audio = null;
  var soundOn = false;
  try { soundOn = window.localStorage.getItem("manyi.sound") === "on"; } catch (e) { soundOn = false; }

  function showSound() {
    soundButton.textContent = soundOn ? "声音提示：开" : "声音提示：关";
    soundButton.setAttribute("aria-pressed", soundOn ? "true" : "false");
  }

  function audioContext() {
    var Ctx = window.AudioContext || window.webkitAudioContext;
    if (!audio && Ctx) { audio = new Ctx(); }
    if (audio && audio.state === "suspended") { audio.resume(); }
    return audio;
  }

  function beep() {
    if (!soundOn) { return; }
    try {
      var ctx = audioContext();
      if (!ctx || ctx.state !== "running") { return; }
      var osc = ctx.createOscillator(), gain = ctx.createGain();
      osc.frequency.value = 880; gain.gain.value = 0.05;
      osc.connect(gain); gain.connect(ctx.destination);
      osc.start(); osc.stop(ctx.currentTime + 0.25);
    } catch (e) { /* sound is optional */ }
  }

  soundButton.addEventListener("click", function () {
    soundOn = !soundOn;
    try { window.localStorage.setItem("manyi.sound", soundOn ? "on" : "off"); } catch (e) { /* private mode */ }
    if (soundOn) { audioContext(); beep(); }
    showSound();
  });
  showSound();

  // In a background tab the title counts unsatisfied votes until the page is looked at again.
  var baseTitle = document.title, unseen = 0;
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) { unseen = 0; document.title = baseTitle; }
  });

  function addItem(item, live) {
    var emptyItem = document.getElementById("ticker-empty");
    if (emptyItem) { ticker.removeChild(emptyItem); }
    var li = el("li", "vote " + item.rating);
    li.setAttribute("data-device", item.device);
    li.setAttribute("data-seq", item.seq);
    li.appendChild(el("span", "rating", item.rating_label));
    li.appendChild(el("span", "time", shortTime(item.time)));
    var place = [item.county_name, item.hall_name, item.window_name].filter(Boolean).join(" · ") || item.device;
    li.appendChild(el("span", "place", place));
    li.title = place + "（终端 " + item.device + "）";
    ticker.insertBefore(li, ticker.firstChild);
    while (ticker.children.length > MAX_ITEMS) { ticker.removeChild(ticker.lastChild); }
    if (live && item.rating === "unsatisfied") {
      li.classList.add("flash");
      unsatisfiedSeen += 1;
      unsatisfiedCount.textContent = "本页打开后不满意 " + unsatisfiedSeen + " 条";
      unsatisfiedCount.hidden = false;
      if (document.hidden) { unseen += 1; document.title = "（" + unseen + "）不满意 · " + baseTitle; }
      bannerText.textContent = "不满意评价：" + place + "（" + shortTime(item.time) + "）";
      banner.hidden = false;
      banner.classList.remove("flash"); void banner.offsetWidth; banner.classList.add("flash");
      beep();
    }
  }

  function connect() {
    var url = "/api/v1/stream" + (cursor ? "?after=" + encodeURIComponent(cursor) : "");
    source = new EventSource(url);
    source.addEventListener("open", function () { streamState.textContent = "实时"; streamState.className = "badge green"; });
    source.addEventListener("error", function () {
      streamState.textContent = "重连中"; streamState.className = "badge orange";
      // A refused stream (429: too many open for this account, or the server is full) closes the
      // EventSource for good; try again later instead of staying dark.
      if (source.readyState === EventSource.CLOSED) {
        source = null;
        setTimeout(connect, 10000 + Math.floor(Math.random() * 10000));
      }
    });
    source.addEventListener("vote", function (ev) {
      var item = JSON.parse(ev.data);
      cursor = item.cursor;
      addItem(item, true);
      scheduleRedraw();
    });
  }

  function loadFeed() {
    return fetch("/api/v1/feed?limit=30", { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (data) {
        data.items.forEach(function (item) { addItem(item, false); });
        cursor = data.cursor;
      });
  }

  bannerClose.addEventListener("click", function () { banner.hidden = true; });

  Array.prototype.forEach.call(document.querySelectorAll("button.period"), function (btn) {
    btn.addEventListener("click", function () {
      period = btn.getAttribute("data-period");
      Array.prototype.forEach.call(document.querySelectorAll("button.period"), function (b) {
        b.classList.toggle("active", b === btn);
      });
      history.replaceState(null, "", "/?period=" + encodeURIComponent(period));
      drawMap();
    });
  });

  drawMap();
  loadFeed().then(connect, connect);
  window.addEventListener("beforeunload", function () { if (source) { source.close(); } });
})();
