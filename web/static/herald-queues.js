/*
 * The Queues screen (admins): every queue's state, depth and settings, live.
 *
 * Every batch of task changes, every failure and every settings change is announced
 * on admin.tasks; the panel answers each announcement, and each (re)subscribe, by
 * fetching /api/queues (one fetch at a time, at most one a second), so the numbers
 * are the server's, whatever order announcements arrive in.
 *
 * The forms work without this script (they post and come back to the screen); with
 * it they PATCH /api/queues/{name} and the row shows the answer. A settings form the
 * admin is editing is not overwritten by a refresh until it is saved or reset.
 */
(function () {
  "use strict";

  var Live = window.HeraldLive;
  var MIN_GAP_MS = 1000;
  var STATE_TEXT = { paused: "paused", closed: "outside its window", running: "running" };

  function QueuesPanel(root, live) {
    this.root = root;
    this.live = live;
    this.url = root.dataset.queuesUrl;
    this.rows = root.querySelector('[data-field="queue-rows"]');
    this.template = root.querySelector("template[data-queue-template]");
    this.status = root.querySelector('[data-field="queues-status"]');
    var self = this;
    // One fetch at a time and at most one a second; announcements meanwhile make one more.
    this.refresh = Live.coalesced(function () { return self.fetchQueues(); }, MIN_GAP_MS);
  }

  QueuesPanel.prototype.start = function () {
    var self = this;
    Array.prototype.forEach.call(this.rows.querySelectorAll("tr[data-queue]"), function (row) {
      self.enhanceRow(row);
    });
    this.live.subscribe("admin.tasks", function () { self.refresh(); }, {
      // Announcements made while not subscribed are lost: catch up.
      subscribed: function () {
        self.root.dataset.live = "1";
        self.refresh();
      }
    });
  };

  QueuesPanel.prototype.fetchQueues = function () {
    var self = this;
    return Live.getJson(this.url).then(function (answer) {
      (answer.queues || []).forEach(function (queue) { self.render(queue); });
      self.root.dataset.refreshed = String(Date.now());
    });
  };

  QueuesPanel.prototype.rowFor = function (name) {
    var found = null;
    Array.prototype.forEach.call(this.rows.querySelectorAll("tr[data-queue]"), function (row) {
      if (row.dataset.queue === name) { found = row; }
    });
    if (found || !this.template || !/^[A-Za-z0-9_-]{1,64}$/.test(name)) { return found; }
    // A queue that appeared since the page was rendered: a fresh row for it.
    var row = this.template.content.querySelector("tr").cloneNode(true);
    row.id = "queue-" + name;
    row.dataset.queue = name;
    row.querySelector('[data-field="name"]').textContent = name;
    Array.prototype.forEach.call(row.querySelectorAll("form"), function (form) {
      form.setAttribute("action", "/admin/queues/" + name);
    });
    this.rows.appendChild(row);
    var none = this.root.querySelector('[data-field="no-queues"]');
    if (none) { none.remove(); }
    this.enhanceRow(row);
    return row;
  };

  function setText(row, field, value) {
    var cell = row.querySelector('[data-field="' + field + '"]');
    if (cell) { cell.textContent = String(value); }
  }

  QueuesPanel.prototype.render = function (queue) {
    var row = this.rowFor(String(queue.name || ""));
    if (!row) { return; }
    var state = Live.cssToken(queue.state);
    row.dataset.state = state;
    var badge = row.querySelector('[data-field="state"]');
    badge.className = "badge badge-queue-" + state;
    badge.textContent = STATE_TEXT[state] || state;
    ["waiting", "running", "delayed", "failed_1h"].forEach(function (field) {
      setText(row, field, queue[field]);
    });
    setText(row, "max_active", queue.max_active === null ? "no cap" : queue.max_active);
    var pause = row.querySelector('[data-field="pause-button"]');
    pause.value = queue.paused ? "0" : "1";
    pause.textContent = queue.paused ? "Resume" : "Pause";
    var form = row.querySelector('form[data-queue-form="settings"]');
    if (form && !form.dataset.dirty && !form.contains(document.activeElement)) {
      form.elements.max_active.value = queue.max_active === null ? "" : String(queue.max_active);
      form.elements.window.value = queue.window || "";
      form.elements.immediate.checked = Boolean(queue.immediate);
    }
  };

  QueuesPanel.prototype.say = function (row, text, isError) {
    var status = row.querySelector('[data-field="row-status"]');
    if (!status) { return; }
    status.textContent = text;
    status.className = "queue-row-status " + (isError ? "error-text" : "muted");
    status.setAttribute("role", isError ? "alert" : "status");
  };

  QueuesPanel.prototype.enhanceRow = function (row) {
    var self = this;
    var pauseForm = row.querySelector('form[data-queue-form="pause"]');
    var settingsForm = row.querySelector('form[data-queue-form="settings"]');
    function send(body, form) {
      var name = row.dataset.queue;
      form.dataset.saving = "1";
      return Live.sendJson("PATCH", "/api/queues/" + encodeURIComponent(name), body).then(function (queue) {
        delete form.dataset.dirty;
        self.render(queue);
        self.say(row, "Saved.", false);
      }, function (error) {
        self.say(row, error.message, true);
      }).then(function () { delete form.dataset.saving; });
    }
    if (pauseForm) {
      pauseForm.addEventListener("submit", function (event) {
        event.preventDefault();
        var button = pauseForm.querySelector('[data-field="pause-button"]');
        send({ paused: button.value === "1" }, pauseForm);
      });
    }
    if (settingsForm) {
      settingsForm.addEventListener("input", function () { settingsForm.dataset.dirty = "1"; });
      settingsForm.addEventListener("submit", function (event) {
        event.preventDefault();
        var raw = settingsForm.elements.max_active.value.trim();
        var cap = null;
        if (raw !== "" && raw.toLowerCase() !== "none") {
          if (!/^\d+$/.test(raw)) {
            self.say(row, "The cap must be a whole number, or empty for no cap.", true);
            return;
          }
          cap = parseInt(raw, 10);
        }
        var windowText = settingsForm.elements.window.value.trim();
        send({
          max_active: cap,
          window: windowText === "" ? null : windowText,
          immediate: settingsForm.elements.immediate.checked
        }, settingsForm);
      });
    }
  };

  /* Boot (herald.js): the panel of the Queues screen, if this page is it. */
  function start(live) {
    var root = document.querySelector("[data-queues]");
    if (root) { new QueuesPanel(root, live).start(); }
  }

  window.HeraldQueues = { QueuesPanel: QueuesPanel, start: start };
}());
