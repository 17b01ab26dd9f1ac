/*
 * The admins' dashboard: small SVG charts of queue depth, throughput and failures per
 * queue, and execution time percentiles per task kind, drawn here (no chart library)
 * from /api/stats, element by element (createElementNS, textContent: never markup).
 *
 * Each chart is an <svg role="img"> named by its caption and described by a summary of
 * its numbers, over a table of every number (the page renders the tables, so they work
 * without this script; this script refreshes them with the charts).
 *
 * Live: every batch of task changes and every failure is announced on admin.tasks;
 * the dashboard refetches on each announcement (at most one fetch every two seconds),
 * on each (re)subscribe, and every 30 seconds for the queue depth samples.
 */
(function () {
  "use strict";

  var Live = window.HeraldLive;
  var SVG = "http://www.w3.org/2000/svg";
  var WIDTH = 640;
  var HEIGHT = 200;
  var PAD = { left: 44, right: 12, top: 12, bottom: 28 };
  var MIN_GAP_MS = 2000;
  var PERIOD_MS = 30000;
  var PERCENTILES = ["p50", "p95", "p99"];

  function el(name, attrs, parent) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attrs || {}).forEach(function (key) { node.setAttribute(key, String(attrs[key])); });
    if (parent) { parent.appendChild(node); }
    return node;
  }

  function text(parent, x, y, value, cls) {
    var node = el("text", { x: x, y: y, "class": cls || "chart-label" }, parent);
    node.textContent = value;
    return node;
  }

  function clear(node) {
    while (node.firstChild) { node.removeChild(node.firstChild); }
  }

  function timeLabel(seconds, long) {
    var when = new Date(seconds * 1000);
    var options = { hour: "2-digit", minute: "2-digit" };
    if (long) { options.day = "numeric"; options.month = "short"; }
    return when.toLocaleString([], options);
  }

  function niceMax(value) {
    if (!(value > 0)) { return 1; }
    var power = Math.pow(10, Math.floor(Math.log10(value)));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i += 1) {
      if (steps[i] * power >= value) { return steps[i] * power; }
    }
    return 10 * power;
  }

  function seconds(value) {
    if (value === null || value === undefined) { return "—"; }
    return value < 1 ? (value * 1000).toFixed(value < 0.01 ? 1 : 0) + " ms" : value.toFixed(value < 10 ? 2 : 1) + " s";
  }

  /* One line (with a dot per point) per queue over the buckets; null values leave gaps. */
  function lineChart(svg, stats, series, unit) {
    clear(svg);
    svg.setAttribute("viewBox", "0 0 " + WIDTH + " " + HEIGHT);
    var buckets = stats.buckets;
    var queues = stats.queues;
    var top = 0;
    queues.forEach(function (queue) {
      (series[queue] || []).forEach(function (value) { if (value > top) { top = value; } });
    });
    var max = Math.max(2, niceMax(top));  // whole numbers of jobs: 0, 1, 2 at the least
    var plotW = WIDTH - PAD.left - PAD.right;
    var plotH = HEIGHT - PAD.top - PAD.bottom;
    function x(i) { return PAD.left + (buckets.length > 1 ? (i * plotW) / (buckets.length - 1) : plotW / 2); }
    function y(v) { return PAD.top + plotH - (v * plotH) / max; }
    el("line", { x1: PAD.left, y1: y(0), x2: WIDTH - PAD.right, y2: y(0), "class": "chart-axis" }, svg);
    el("line", { x1: PAD.left, y1: y(max / 2), x2: WIDTH - PAD.right, y2: y(max / 2), "class": "chart-grid" }, svg);
    el("line", { x1: PAD.left, y1: y(max), x2: WIDTH - PAD.right, y2: y(max), "class": "chart-grid" }, svg);
    text(svg, PAD.left - 6, y(0) + 4, "0", "chart-label chart-label-y");
    if (max % 2 === 0) { text(svg, PAD.left - 6, y(max / 2) + 4, String(max / 2), "chart-label chart-label-y"); }
    text(svg, PAD.left - 6, y(max) + 4, String(max), "chart-label chart-label-y");
    var long = stats.hours > 24;
    if (buckets.length) {
      text(svg, x(0), HEIGHT - 8, timeLabel(buckets[0], long), "chart-label chart-label-start");
      text(svg, x(buckets.length - 1), HEIGHT - 8, timeLabel(buckets[buckets.length - 1], long),
        "chart-label chart-label-end");
    }
    queues.forEach(function (queue, index) {
      var values = series[queue] || [];
      var group = el("g", { "class": "chart-series series-" + (index % 8), "data-series": queue }, svg);
      var path = "";
      var pen = false;
      values.forEach(function (value, i) {
        if (value === null || value === undefined) {
          pen = false;
          return;
        }
        path += (pen ? " L " : " M ") + x(i).toFixed(1) + " " + y(value).toFixed(1);
        pen = true;
      });
      if (path) { el("path", { d: path.trim(), "class": "chart-line" }, group); }
      values.forEach(function (value, i) {
        if (value === null || value === undefined) { return; }
        var dot = el("circle", {
          cx: x(i).toFixed(1), cy: y(value).toFixed(1), r: value > 0 ? 2.5 : 1.5,
          "class": "chart-dot", "data-point": value
        }, group);
        var tip = el("title", {}, dot);
        tip.textContent = queue + ", " + timeLabel(buckets[i], long) + ": " + value + " " + unit;
      });
    });
  }

  /* Per kind, one bar for each percentile, on a shared scale. */
  function durationChart(svg, rows) {
    clear(svg);
    var rowH = 3 * 12 + 10;
    var height = Math.max(60, PAD.top + rows.length * rowH + PAD.bottom);
    svg.setAttribute("viewBox", "0 0 " + WIDTH + " " + height);
    var labelW = 150;
    var plotW = WIDTH - labelW - PAD.right - 70;
    var top = 0;
    rows.forEach(function (row) {
      PERCENTILES.forEach(function (p) { if (row[p] > top) { top = row[p]; } });
    });
    var max = niceMax(top);
    if (!rows.length) {
      text(svg, WIDTH / 2, height / 2, "No task done in this period.", "chart-label chart-empty");
      return;
    }
    rows.forEach(function (row, index) {
      var y0 = PAD.top + index * rowH;
      var group = el("g", { "class": "chart-kind", "data-kind": row.kind }, svg);
      text(group, labelW - 8, y0 + 20, row.kind, "chart-label chart-label-kind");
      PERCENTILES.forEach(function (p, j) {
        var value = row[p] || 0;
        var bar = el("rect", {
          x: labelW, y: y0 + j * 12, width: Math.max(1, (value * plotW) / max).toFixed(1), height: 10,
          "class": "chart-bar bar-" + p, "data-point": value
        }, group);
        var tip = el("title", {}, bar);
        tip.textContent = row.kind + " " + p + ": " + seconds(row[p]);
        text(group, labelW + Math.max(1, (value * plotW) / max) + 4, y0 + j * 12 + 9,
          p + " " + seconds(row[p]), "chart-label chart-label-value");
      });
    });
  }

  function summary(stats, series, unit) {
    return stats.queues.map(function (queue) {
      var values = (series[queue] || []).filter(function (v) { return v !== null && v !== undefined; });
      var last = values.length ? values[values.length - 1] : "none";
      var most = values.reduce(function (a, b) { return Math.max(a, b); }, 0);
      var total = values.reduce(function (a, b) { return a + b; }, 0);
      return queue + ": latest " + last + ", highest " + most + ", " + total + " " + unit + " in all";
    }).join("; ") || "No queues yet.";
  }

  function fillTable(table, stats, series) {
    if (!table) { return; }
    var head = table.tHead.rows[0];
    while (head.cells.length > 1) { head.deleteCell(1); }
    stats.queues.forEach(function (queue) {
      var th = document.createElement("th");
      th.scope = "col";
      th.textContent = queue;
      head.appendChild(th);
    });
    var body = table.tBodies[0];
    clear(body);
    stats.buckets.forEach(function (bucket, i) {
      var tr = body.insertRow();
      var th = document.createElement("th");
      th.scope = "row";
      th.textContent = timeLabel(bucket, stats.hours > 24);
      tr.appendChild(th);
      stats.queues.forEach(function (queue) {
        var value = (series[queue] || [])[i];
        tr.insertCell().textContent = value === null || value === undefined ? "—" : String(value);
      });
    });
  }

  function fillDurations(table, rows) {
    if (!table) { return; }
    var body = table.tBodies[0];
    clear(body);
    rows.forEach(function (row) {
      var tr = body.insertRow();
      var th = document.createElement("th");
      th.scope = "row";
      th.textContent = row.kind;
      tr.appendChild(th);
      tr.insertCell().textContent = String(row.count);
      PERCENTILES.concat(["max"]).forEach(function (p) {
        tr.insertCell().textContent = row[p] === null ? "—" : String(row[p]);
      });
    });
  }

  // ---------------------------------------------------------------------------
  function Dashboard(root, live) {
    this.root = root;
    this.live = live;
    this.url = root.dataset.statsUrl;
    this.status = root.querySelector('[data-field="dashboard-status"]');
    var self = this;
    // One fetch at a time and at most one every MIN_GAP_MS; asks meanwhile make one more.
    this.refresh = Live.coalesced(function () { return self.fetchStats(); }, MIN_GAP_MS);
  }

  Dashboard.prototype.start = function () {
    var self = this;
    this.live.subscribe("admin.tasks", function () { self.refresh(); }, {
      subscribed: function () {
        self.root.dataset.live = "1";
        self.refresh();
      }
    });
    setInterval(function () { self.refresh(); }, PERIOD_MS);
    this.refresh();
  };

  Dashboard.prototype.fetchStats = function () {
    var self = this;
    return Live.getJson(this.url).then(function (stats) {
      self.render(stats);
      if (self.status) { self.status.textContent = ""; }
    }, function () {
      if (self.status) { self.status.textContent = "Could not refresh the charts; trying again."; }
    });
  };

  Dashboard.prototype.render = function (stats) {
    var root = this.root;
    // The last bucket of the depth chart ends now: show what Redis holds now in it.
    var depth = {};
    stats.queues.forEach(function (queue) {
      var series = (stats.depth[queue] || []).slice();
      var now = stats.current && stats.current[queue];
      if (series.length && now) {
        series[series.length - 1] = Math.max(series[series.length - 1] || 0, now.waiting);
      }
      depth[queue] = series;
    });
    var charts = [
      ["depth", depth, "waiting"],
      ["throughput", stats.throughput, "done"],
      ["failures", stats.failures, "failed"]
    ];
    charts.forEach(function (chart) {
      var figure = root.querySelector('[data-chart="' + chart[0] + '"]');
      if (!figure) { return; }
      lineChart(figure.querySelector("svg[data-svg]"), stats, chart[1], chart[2]);
      figure.querySelector('[data-field="summary"]').textContent = summary(stats, chart[1], chart[2]);
      fillTable(figure.querySelector("table[data-table]"), stats, chart[1]);
      figure.dataset.drawn = String(Date.now());
    });
    this.renderLegends(stats.queues);
    var durations = root.querySelector('[data-chart="durations"]');
    if (durations) {
      durationChart(durations.querySelector("svg[data-svg]"), stats.durations || []);
      durations.querySelector('[data-field="summary"]').textContent = (stats.durations || []).map(function (row) {
        return row.kind + ": p50 " + seconds(row.p50) + ", p95 " + seconds(row.p95) + ", p99 " +
          seconds(row.p99) + " (" + row.count + " done)";
      }).join("; ") || "No task done in this period.";
      fillDurations(durations.querySelector("table[data-table]"), stats.durations || []);
      durations.dataset.drawn = String(Date.now());
    }
    var totals = { processed: stats.totals.processed, failed: stats.totals.failed, waiting: 0, running: 0 };
    Object.keys(stats.current || {}).forEach(function (queue) {
      totals.waiting += stats.current[queue].waiting;
      totals.running += stats.current[queue].running;
    });
    Object.keys(totals).forEach(function (name) {
      var cell = root.querySelector('[data-total="' + name + '"]');
      if (cell) { cell.textContent = String(totals[name]); }
    });
    this.renderAlerts(stats.alerts || []);
  };

  Dashboard.prototype.renderLegends = function (queues) {
    Array.prototype.forEach.call(this.root.querySelectorAll("figure[data-chart]"), function (figure) {
      if (figure.dataset.chart === "durations") { return; }
      var legend = figure.querySelector("ul.chart-legend");
      if (!legend) {
        legend = document.createElement("ul");
        legend.className = "chart-legend";
        legend.setAttribute("aria-hidden", "true");  // the summary and table say it all
        figure.insertBefore(legend, figure.querySelector("svg").nextSibling);
      }
      clear(legend);
      queues.forEach(function (queue, index) {
        var item = document.createElement("li");
        item.className = "series-" + (index % 8);
        item.textContent = queue;
        legend.appendChild(item);
      });
    });
  };

  Dashboard.prototype.renderAlerts = function (alerts) {
    var list = this.root.querySelector('[data-field="alerts"]');
    if (!list) { return; }
    clear(list);
    if (!alerts.length) {
      var none = document.createElement("li");
      none.className = "muted";
      none.textContent = "None.";
      list.appendChild(none);
      return;
    }
    alerts.forEach(function (alert) {
      var item = document.createElement("li");
      item.dataset.alertId = String(alert.id);
      var time = document.createElement("time");
      time.setAttribute("datetime", String(alert.created_at));
      time.textContent = Live.localTime(alert.created_at);
      item.appendChild(time);
      item.appendChild(document.createTextNode(" " + alert.text));
      if (alert.kind === "backlog" && !alert.ended_at) {
        var badge = document.createElement("span");
        badge.className = "badge badge-level-urgent";
        badge.textContent = "ongoing";
        item.appendChild(document.createTextNode(" "));
        item.appendChild(badge);
      }
      list.appendChild(item);
    });
  };

  /* Boot (herald.js): the charts of the admins' dashboard, if this page is it. */
  function start(live) {
    var root = document.querySelector("[data-dashboard]");
    if (root) { new Dashboard(root, live).start(); }
  }

  window.HeraldDashboard = { Dashboard: Dashboard, niceMax: niceMax, start: start };
}());
