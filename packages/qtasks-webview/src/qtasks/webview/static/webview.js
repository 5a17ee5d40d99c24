/* qtasks-webview: live updates by short polling of the JSON API.
   Everything from the server is written with textContent or setAttribute on numbers:
   no HTML is ever built from data. */
(function () {
  "use strict";
  var body = document.body;
  var interval = parseInt(body.getAttribute("data-poll") || "2000", 10);
  var page = body.getAttribute("data-page");
  var status = document.getElementById("live-status");

  function get(obj, path) {
    return path.split(".").reduce(function (o, k) { return o == null ? undefined : o[k]; }, obj);
  }

  function show(ok) {
    if (!status) { return; }
    status.className = ok ? "live" : "live offline";
    status.textContent = ok ? "live · " + new Date().toLocaleTimeString() : "offline";
  }

  function fetchJSON(url) {
    return fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.json(); });
  }

  function setLive(data) {
    document.querySelectorAll("[data-live]").forEach(function (el) {
      var value = get(data, el.getAttribute("data-live"));
      if (value !== undefined && value !== null) { el.textContent = String(value); }
    });
  }

  function row(cells) {
    var tr = document.createElement("tr");
    cells.forEach(function (text) {
      var td = document.createElement("td");
      td.textContent = text === null || text === undefined ? "—" : String(text);
      tr.appendChild(td);
    });
    return tr;
  }

  function emptyRow(columns, text) {
    var tr = row([text]);
    tr.className = "empty";
    tr.firstChild.setAttribute("colspan", String(columns));
    return tr;
  }

  function when(iso) {
    return iso ? iso.replace("T", " ").slice(0, 19) : "—";
  }

  function fillWorkers(workers) {
    var tbody = document.getElementById("workers-body");
    if (!tbody) { return; }
    var rows = workers.map(function (w) {
      var tr = row([w.id, w.host, w.pid, w.heartbeat_age, w.in_flight, w.running, w.processed,
                    w.concurrency, (w.queues || []).join(", "), when(w.started)]);
      tr.firstChild.className = "mono";
      return tr;
    });
    tbody.replaceChildren.apply(tbody, rows.length ? rows : [emptyRow(10, "No live worker.")]);
    var count = document.getElementById("workers-count");
    if (count) { count.textContent = String(workers.length); }
  }

  function fillQueues(queues) {
    var tbody = document.getElementById("queues-body");
    if (!tbody) { return; }
    var rows = Object.keys(queues).sort().map(function (name) {
      var q = queues[name];
      var prios = Object.keys(q.priorities || {}).sort(function (a, b) { return a - b; })
        .map(function (p) { return "p" + p + ": " + q.priorities[p]; }).join(", ");
      return row([name, q.ready, q.delayed, prios || "—"]);
    });
    tbody.replaceChildren.apply(tbody, rows.length ? rows : [emptyRow(4, "No queued task.")]);
  }

  function fillChart(perMinute) {
    var svg = document.getElementById("throughput");
    if (!svg) { return; }
    var height = parseInt(svg.getAttribute("data-height"), 10);
    var peak = Math.max.apply(null, [1].concat(perMinute));
    svg.querySelectorAll("rect.bar").forEach(function (bar, i) {
      var n = Number(perMinute[i] || 0);
      var h = Math.round(n / peak * height);
      bar.setAttribute("y", String(height - h));
      bar.setAttribute("height", String(h));
      var title = bar.querySelector("title");
      if (title) { title.textContent = n + " finished, " + (59 - i) + " min ago"; }
    });
  }

  var refreshers = {
    overview: function () {
      return fetchJSON("/api/overview").then(function (data) {
        setLive(data);
        fillQueues(data.queues);
        fillWorkers(data.workers);
        fillChart(data.throughput.per_minute);
      });
    },
    workers: function () {
      return fetchJSON("/api/workers").then(function (data) { fillWorkers(data.workers); });
    },
    dead: function () {
      return fetchJSON("/api/dead?limit=1").then(function (data) { setLive({ dead: data.total }); });
    },
    tasks: function () {
      var uuid = body.getAttribute("data-task");
      if (!uuid || body.getAttribute("data-final") === "true") { return null; }
      return fetchJSON("/api/tasks/" + encodeURIComponent(uuid)).then(function (data) {
        // The page shows more than the status (result, traceback, timings): render it anew.
        if (data.status !== body.getAttribute("data-status")) { window.location.reload(); }
      });
    }
  };

  var refresh = refreshers[page];
  if (!refresh) { return; }

  function tick() {
    if (document.hidden) { window.setTimeout(tick, interval); return; }
    var pending = refresh();
    if (!pending) { return; }
    pending.then(function () { show(true); }, function () { show(false); })
      .then(function () { window.setTimeout(tick, interval); });
  }
  window.setTimeout(tick, interval);
})();
