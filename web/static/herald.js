/*
 * Herald browser client (plain JS, no build step).
 *
 * - LiveConnection: one WAMP connection per page, authenticated with a fresh
 *   single-use ticket from /api/wamp/ticket on every connect. autobahn-js stops
 *   auto-reconnecting after an abort (e.g. the router's authenticator was not
 *   registered yet), so its own retries are off (max_retries: 0) and this class
 *   reconnects after ANY close, with exponential backoff and jitter, and
 *   re-subscribes every topic on every open.
 * - SubmissionPage: live step progress. Every (re)subscribe resyncs from
 *   GET /api/submissions/{id}; events with seq <= lastSeq are ignored, a gap
 *   (seq > lastSeq + 1) triggers a resync, the next seq is applied.
 *
 * Data only ever reaches the DOM through textContent and attributes, never
 * innerHTML. Server data comes in through data-* attributes (CSP: no inline JS).
 */
(function () {
  "use strict";

  var BACKOFF_BASE_MS = 500;
  var BACKOFF_MAX_MS = 30000;
  var MAX_PENDING = 500;
  var STATE_TEXT = {
    offline: "offline",
    connecting: "connecting…",
    live: "live",
    reconnecting: "reconnecting…",
    "signed-out": "signed out",
    unavailable: "live updates unavailable"
  };

  function backoffDelay(attempt) {
    var cap = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * Math.pow(2, Math.min(attempt, 16)));
    // Half fixed, half random: after a router restart the browsers do not all
    // come back in the same instant.
    return cap / 2 + Math.random() * (cap / 2);
  }

  function getJson(url) {
    return fetch(url, {
      credentials: "same-origin",
      cache: "no-store",
      headers: { Accept: "application/json" }
    }).then(function (response) {
      if (response.status === 401) {
        var signedOut = new Error("signed out");
        signedOut.signedOut = true;
        throw signedOut;
      }
      if (!response.ok) {
        throw new Error(url + " answered " + response.status);
      }
      return response.json();
    });
  }

  /* The envelope may arrive as the first positional argument or as kwargs. */
  function envelopeFrom(args, kwargs) {
    var value = args && args.length ? args[0] : kwargs;
    if (typeof value === "string") {
      try {
        value = JSON.parse(value);
      } catch (e) {
        return null;
      }
    }
    return value && typeof value === "object" ? value : null;
  }

  function cssToken(value) {
    return String(value || "").toLowerCase().replace(/[^a-z0-9_-]/g, "");
  }

  // ---------------------------------------------------------------------------
  function LiveConnection(options) {
    this.ticketUrl = options.ticketUrl;
    this.onState = options.onState || function () {};
    this.subscriptions = [];
    this.connection = null;
    this.session = null;
    this.attempt = 0;
    this.timer = null;
    this.opened = false;
    this.stopped = false;
  }

  LiveConnection.prototype.subscribe = function (topic, handler, hooks) {
    var sub = { topic: topic, handler: handler, hooks: hooks || {} };
    this.subscriptions.push(sub);
    if (this.session) {
      this._subscribeOne(this.session, sub);
    }
  };

  LiveConnection.prototype.start = function () {
    var self = this;
    window.addEventListener("online", function () { self.reconnectNow(); });
    this._connect();
  };

  LiveConnection.prototype.stop = function () {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.connection) {
      try { this.connection.close(); } catch (e) { /* already closed */ }
    }
  };

  /* Skip the rest of a backoff wait (the network came back). */
  LiveConnection.prototype.reconnectNow = function () {
    if (this.timer !== null && !this.stopped) {
      clearTimeout(this.timer);
      this.timer = null;
      this.attempt = 0;
      this._connect();
    }
  };

  LiveConnection.prototype._setState = function (state) {
    this.state = state;
    this.onState(state);
  };

  LiveConnection.prototype._connect = function () {
    var self = this;
    this.timer = null;
    if (this.stopped) { return; }
    this._setState(this.opened ? "reconnecting" : "connecting");
    getJson(this.ticketUrl).then(function (grant) {
      if (self.stopped) { return; }
      var ticket = grant.ticket;
      var connection = new autobahn.Connection({
        url: grant.url,
        realm: grant.realm,
        authmethods: ["ticket"],
        authid: grant.authid,
        max_retries: 0,
        onchallenge: function (session, method) {
          if (method !== "ticket" || ticket === null) {
            throw new Error("unexpected authentication challenge: " + method);
          }
          var value = ticket;
          ticket = null;  // single use: a second challenge needs a new connect
          return value;
        }
      });
      connection.onopen = function (session) {
        if (connection !== self.connection) { return; }
        self.session = session;
        self.attempt = 0;
        self.opened = true;
        self._setState("live");
        self.subscriptions.forEach(function (sub) { self._subscribeOne(session, sub); });
      };
      connection.onclose = function (reason, details) {
        if (connection === self.connection) {
          self.connection = null;
          self.session = null;
          self._scheduleReconnect();
        }
        return true;  // never let autobahn retry: its ticket is spent
      };
      self.connection = connection;
      connection.open();
    }).catch(function (error) {
      if (error && error.signedOut) {
        self._setState("signed-out");
        return;
      }
      self._scheduleReconnect();
    });
  };

  LiveConnection.prototype._scheduleReconnect = function () {
    if (this.stopped || this.timer !== null) { return; }
    var self = this;
    this._setState("reconnecting");
    var delay = backoffDelay(this.attempt);
    this.attempt += 1;
    this.timer = setTimeout(function () { self._connect(); }, delay);
  };

  LiveConnection.prototype._subscribeOne = function (session, sub) {
    var self = this;
    session.subscribe(sub.topic, function (args, kwargs) {
      var envelope = envelopeFrom(args, kwargs);
      if (envelope) { sub.handler(envelope); }
    }).then(function () {
      if (session === self.session && sub.hooks.subscribed) { sub.hooks.subscribed(); }
    }, function (error) {
      if (sub.hooks.denied) { sub.hooks.denied(error); }
    });
  };

  // ---------------------------------------------------------------------------
  function SubmissionPage(root, live) {
    this.root = root;
    this.live = live;
    this.apiUrl = root.dataset.apiUrl;
    this.topic = root.dataset.topic;
    this.lastSeq = parseInt(root.dataset.seq, 10) || 0;
    this.syncing = false;
    this.syncAgain = false;
    this.failures = 0;
    this.pending = [];
    this.bar = root.querySelector("#overall-progress");
    this.steps = root.querySelector("#steps");
  }

  SubmissionPage.prototype.start = function () {
    var self = this;
    this.live.subscribe(this.topic, function (envelope) { self.onEvent(envelope); }, {
      subscribed: function () {
        document.body.dataset.live = "1";
        // Events published while we were not subscribed are lost: catch up.
        self.resync();
      },
      denied: function () {
        self.root.dataset.liveError = "denied";
      }
    });
  };

  SubmissionPage.prototype.onEvent = function (envelope) {
    if (typeof envelope.seq !== "number") { return; }
    if (this.syncing) {
      this.pending.push(envelope);
      if (this.pending.length > MAX_PENDING) { this.pending.shift(); }
      return;
    }
    this.handle(envelope);
  };

  SubmissionPage.prototype.handle = function (envelope) {
    if (envelope.seq <= this.lastSeq) { return; }  // already in the state we show
    if (envelope.seq > this.lastSeq + 1) {          // missed something: ask the API
      this.resync();
      return;
    }
    if (!this.apply(envelope)) {                    // a kind of event we cannot apply
      this.resync();
      return;
    }
    this.lastSeq = envelope.seq;
  };

  SubmissionPage.prototype.resync = function () {
    var self = this;
    if (this.syncing) {
      this.syncAgain = true;
      return;
    }
    this.syncing = true;
    getJson(this.apiUrl).then(function (state) {
      self.renderState(state);
      // Taken as is, even if lower: a reset Redis restarts the counter.
      self.lastSeq = state.seq;
      self.failures = 0;
      self.syncing = false;
      if (self.syncAgain) {
        self.syncAgain = false;
        self.resync();
        return;
      }
      var pending = self.pending.sort(function (a, b) { return a.seq - b.seq; });
      self.pending = [];
      pending.forEach(function (envelope) { self.handle(envelope); });
    }).catch(function () {
      // Keep buffering events; retry with backoff.
      self.failures += 1;
      setTimeout(function () {
        self.syncing = false;
        self.syncAgain = false;
        self.resync();
      }, backoffDelay(self.failures));
    });
  };

  SubmissionPage.prototype.apply = function (envelope) {
    var data = envelope.data || {};
    if (!data.submission && !data.step) { return false; }
    if (data.step) {
      this.renderStep(data.step);
      // The preview's address comes with the full state: fetch it once it exists.
      if (data.step.name === "thumbnail" && data.step.status === "done") { this.resync(); }
    }
    if (data.submission) {
      this.renderSubmission(data.submission);
      if (typeof data.submission.progress !== "number") {
        this.setOverall(this.progressFromRows());
      }
    }
    return true;
  };

  SubmissionPage.prototype.renderState = function (state) {
    var self = this;
    this.renderSubmission(state);
    (state.steps || []).forEach(function (step) { self.renderStep(step); });
    this.renderPreview(state.thumbnail_url);
    var grade = this.root.querySelector("#grade");
    if (grade) {
      grade.textContent = state.grade === null || state.grade === undefined
        ? "Not released yet." : String(state.grade);
    }
  };

  SubmissionPage.prototype.renderPreview = function (url) {
    var section = document.getElementById("preview");
    var image = document.getElementById("preview-image");
    if (!section || !image) { return; }
    // Only a same-site API path: the URL comes from our API, but stay strict.
    if (typeof url === "string" && /^\/api\/submissions\/\d+\/thumbnail$/.test(url)) {
      if (image.getAttribute("src") !== url) { image.setAttribute("src", url); }
      section.hidden = false;
    } else {
      section.hidden = true;
    }
  };

  SubmissionPage.prototype.renderSubmission = function (submission) {
    var root = this.root;
    if (submission.status) {
      root.dataset.submissionStatus = submission.status;
      var badge = document.getElementById("submission-status");
      if (badge) {
        badge.textContent = submission.status;
        badge.className = "badge badge-" + cssToken(submission.status);
      }
    }
    var detail = document.getElementById("submission-detail");
    if (detail && "detail" in submission) { detail.textContent = submission.detail || ""; }
    if (typeof submission.progress === "number") { this.setOverall(submission.progress); }
  };

  SubmissionPage.prototype.setOverall = function (progress) {
    var value = Math.max(0, Math.min(100, Math.round(progress)));
    if (this.bar) {
      this.bar.value = value;
      this.bar.setAttribute("aria-valuenow", String(value));
      this.bar.textContent = value + "%";
    }
    var label = document.getElementById("overall-progress-label");
    if (label) { label.textContent = value + "%"; }
  };

  /* Steps run side by side, so a step's event carries no overall figure: it is the
     mean of the rows, finished ones counting in full, as the server computes it. */
  SubmissionPage.prototype.progressFromRows = function () {
    var rows = this.steps ? this.steps.querySelectorAll("tr[data-step]") : [];
    if (!rows.length) { return 0; }
    var total = 0;
    for (var i = 0; i < rows.length; i += 1) {
      var status = rows[i].dataset.status;
      if (status === "done" || status === "skipped") {
        total += 100;
      } else {
        total += Number(rows[i].querySelector('[data-field="bar"]').value) || 0;
      }
    }
    return total / rows.length;
  };

  SubmissionPage.prototype.stepRow = function (name) {
    var rows = this.steps ? this.steps.querySelectorAll("tr[data-step]") : [];
    for (var i = 0; i < rows.length; i += 1) {
      if (rows[i].dataset.step === name) { return rows[i]; }
    }
    if (!this.steps) { return null; }
    // A step the page did not render yet: build its row from scratch.
    var row = document.createElement("tr");
    row.dataset.step = name;
    var label = document.createElement("th");
    label.scope = "row";
    label.dataset.field = "label";
    label.textContent = name;
    var statusCell = document.createElement("td");
    var badge = document.createElement("span");
    badge.dataset.field = "status";
    statusCell.appendChild(badge);
    var progressCell = document.createElement("td");
    var bar = document.createElement("progress");
    bar.className = "progress small";
    bar.max = 100;
    bar.dataset.field = "bar";
    bar.setAttribute("aria-hidden", "true");
    var text = document.createElement("span");
    text.dataset.field = "progress";
    progressCell.appendChild(bar);
    progressCell.appendChild(document.createTextNode(" "));
    progressCell.appendChild(text);
    var detail = document.createElement("td");
    detail.dataset.field = "detail";
    row.appendChild(label);
    row.appendChild(statusCell);
    row.appendChild(progressCell);
    row.appendChild(detail);
    this.steps.appendChild(row);
    return row;
  };

  SubmissionPage.prototype.renderStep = function (step) {
    if (!step || !step.name) { return; }
    var row = this.stepRow(String(step.name));
    if (!row) { return; }
    if (step.label) { row.querySelector('[data-field="label"]').textContent = step.label; }
    if (step.status) {
      row.dataset.status = step.status;
      var badge = row.querySelector('[data-field="status"]');
      badge.textContent = step.status;
      badge.className = "badge badge-" + cssToken(step.status);
    }
    if (typeof step.progress === "number") {
      var value = Math.max(0, Math.min(100, Math.round(step.progress)));
      var bar = row.querySelector('[data-field="bar"]');
      bar.value = value;
      row.querySelector('[data-field="progress"]').textContent = value + "%";
    }
    if ("detail" in step) {
      row.querySelector('[data-field="detail"]').textContent = step.detail || "";
    }
  };

  // ---------------------------------------------------------------------------
  /* A staff list of submissions: each row follows its submission's topic. Step
     events carry no overall figure, so each row keeps its steps' progress, seeded
     from the API the first time an event arrives for it. */
  var FINAL_STATUSES = ["complete", "rejected", "failed"];

  function SubmissionList(table, live) {
    this.table = table;
    this.live = live;
    this.stepCount = parseInt(table.dataset.stepCount, 10) || 1;
  }

  SubmissionList.prototype.start = function () {
    var self = this;
    var rows = this.table.querySelectorAll("tr[data-submission-id]");
    Array.prototype.forEach.call(rows, function (row) {
      var id = row.dataset.submissionId;
      if (!/^\d+$/.test(id)) { return; }
      row.heraldSteps = null;
      row.heraldSeq = 0;
      self.live.subscribe("submission." + id, function (envelope) {
        // Events and API answers race each other: only ever move forward in seq.
        if (typeof envelope.seq !== "number" || envelope.seq <= row.heraldSeq) { return; }
        row.heraldSeq = envelope.seq;
        self.onEvent(row, id, envelope.data || {});
      }, {
        // Events published before this subscription are lost: catch up on any
        // submission that was still running when the page was drawn.
        subscribed: function () {
          var badge = row.querySelector('[data-field="status"] .badge');
          if (badge && FINAL_STATUSES.indexOf(badge.textContent) === -1) { self.catchUp(row, id); }
        }
      });
    });
  };

  SubmissionList.prototype.catchUp = function (row, id) {
    var self = this;
    getJson("/api/submissions/" + id).then(function (state) {
      if (state.seq < row.heraldSeq) { return; }  // an event already brought newer news
      row.heraldSeq = state.seq;
      row.heraldSteps = {};
      (state.steps || []).forEach(function (step) { self.remember(row, step); });
      self.onEvent(row, id, { submission: { status: state.status, progress: state.progress } });
    }).catch(function () { row.heraldSteps = null; });
  };

  SubmissionList.prototype.onEvent = function (row, id, data) {
    var self = this;
    if (data.submission && data.submission.status) {
      var badge = row.querySelector('[data-field="status"] .badge');
      if (badge) {
        badge.textContent = data.submission.status;
        badge.className = "badge badge-" + cssToken(data.submission.status);
      }
    }
    if (data.step && data.step.name) {
      var detail = row.querySelector('[data-field="detail"]');
      if (detail) { detail.textContent = (data.step.label || data.step.name) + ": " + data.step.status; }
    }
    if (data.submission && typeof data.submission.progress === "number") {
      this.setProgress(row, data.submission.progress);
      return;
    }
    if (row.heraldSteps === null) {
      // The first step event for this row: its other steps' progress comes from the API.
      row.heraldSteps = {};
      if (data.step) { this.remember(row, data.step); }
      this.catchUp(row, id);
      return;
    }
    if (data.step) { this.remember(row, data.step); }
    this.setProgress(row, this.mean(row));
  };

  SubmissionList.prototype.remember = function (row, step) {
    var done = step.status === "done" || step.status === "skipped";
    row.heraldSteps[step.name] = done ? 100 : (Number(step.progress) || 0);
  };

  SubmissionList.prototype.mean = function (row) {
    var total = 0;
    Object.keys(row.heraldSteps).forEach(function (name) { total += row.heraldSteps[name]; });
    return total / this.stepCount;
  };

  SubmissionList.prototype.setProgress = function (row, progress) {
    var value = Math.max(0, Math.min(100, Math.round(progress)));
    var bar = row.querySelector('[data-field="bar"]');
    if (bar) { bar.value = value; }
    var text = row.querySelector('[data-field="progress"]');
    if (text) { text.textContent = value + "%"; }
  };

  // ---------------------------------------------------------------------------
  /* Flashes: a flash counts as seen once it has been on screen (page visible, at
     least half in view) for SEEN_AFTER_MS, or the user acted on it; then the page
     acknowledges it, and it stops coming back on later page views. */
  var SEEN_AFTER_MS = 3000;
  var TICK_MS = 250;
  // Local paths only, as the server's local_path filter: browsers drop tabs and
  // newlines from URLs and read "/\host" as "//host", another site.
  var LOCAL_PATH = /^\/(?![\/\\])[^\\\u0000-\u001f]*$/;
  var watchedFlashes = [];
  // This page's id in acknowledgements, so their echo does not take its own flashes down.
  var TAB_ID = Math.random().toString(36).slice(2, 12) || "tab";
  var flashObserver = typeof IntersectionObserver === "function"
    ? new IntersectionObserver(function (entries) {
      entries.forEach(function (entry) { entry.target.heraldInView = entry.isIntersecting; });
    }, { threshold: 0.5 })
    : null;

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") || "" : "";
  }

  function ackFlash(item) {
    var id = item.dataset.messageId || "";
    if (item.dataset.acked === "1" || !/^\d+$/.test(id)) { return; }
    item.dataset.acked = "1";
    // keepalive: the acknowledgement survives the click that navigates away.
    fetch("/api/messages/" + id + "/ack", {
      method: "POST",
      credentials: "same-origin",
      keepalive: true,
      headers: { "X-CSRF-Token": csrfToken(), "X-Herald-Tab": TAB_ID, Accept: "application/json" }
    }).then(function (response) {
      if (!response.ok && response.status !== 404) { delete item.dataset.acked; }
    }, function () { delete item.dataset.acked; });
  }

  function removeFlash(item) {
    var dialog = item.closest("dialog");
    if (dialog) {
      if (dialog.open) { dialog.close(); }
      dialog.remove();
    } else {
      item.remove();
    }
  }

  function watchFlash(item) {
    if (item.heraldWatched) { return; }
    item.heraldWatched = true;
    item.heraldInView = flashObserver === null;
    item.heraldShownMs = 0;
    item.addEventListener("click", function (event) {
      var act = event.target.closest("[data-act]");
      if (!act) { return; }
      ackFlash(item);
      if (act.hasAttribute("data-dismiss")) { removeFlash(item); }
    });
    if (item.dataset.modal === "1" && typeof HTMLDialogElement === "function") {
      var dialog = document.createElement("dialog");
      dialog.className = "flash-modal";
      dialog.appendChild(item);
      document.body.appendChild(dialog);
      dialog.addEventListener("cancel", function () { ackFlash(item); dialog.remove(); });
      dialog.showModal();
    }
    if (flashObserver) { flashObserver.observe(item); }
    watchedFlashes.push(item);
  }

  function tickFlashes() {
    var visible = document.visibilityState === "visible";
    watchedFlashes = watchedFlashes.filter(function (item) { return item.isConnected; });
    watchedFlashes.forEach(function (item) {
      if (!visible || !item.heraldInView) { return; }
      item.heraldShownMs += TICK_MS;
      if (item.heraldShownMs >= SEEN_AFTER_MS) { ackFlash(item); }
      var autohide = parseInt(item.dataset.autohide, 10);
      if (autohide > 0 && item.heraldShownMs >= autohide * 1000) {
        ackFlash(item);
        removeFlash(item);
      }
    });
  }

  /* Seen in another tab: take it down here too. The tab that acknowledged it keeps
     showing it (the user is reading it) until it is dismissed or hides itself. */
  function takeDownFlash(data) {
    if (!data || typeof data.id !== "number" || data.tab === TAB_ID) { return; }
    var id = data.id;
    watchedFlashes.forEach(function (item) {
      if (item.dataset.messageId === String(id)) {
        item.dataset.acked = "1";
        removeFlash(item);
      }
    });
  }

  function showFlash(envelope) {
    var data = envelope.data || {};
    if (typeof data.text !== "string") { return; }
    var area = document.getElementById("flash");
    if (!area) { return; }
    if (typeof data.id === "number" &&
        area.querySelector('[data-message-id="' + String(data.id) + '"]')) { return; }
    var options = data.options || {};
    var item = document.createElement("div");
    item.className = "flash flash-" + cssToken(data.level || "info");
    item.setAttribute("role", "status");
    if (typeof data.id === "number") { item.dataset.messageId = String(data.id); }
    if (typeof options.autohide === "number" && options.autohide > 0) {
      item.dataset.autohide = String(Math.round(options.autohide));
    }
    if (options.modal === true) { item.dataset.modal = "1"; }
    var text = document.createElement("span");
    text.className = "flash-text";
    text.textContent = data.text;
    item.appendChild(text);
    function action(label, url, className) {
      if (typeof url !== "string" || !LOCAL_PATH.test(url)) { return; }
      var link = document.createElement("a");
      link.href = url;
      link.textContent = String(label);
      if (className) { link.className = className; }
      link.dataset.act = "";
      item.appendChild(document.createTextNode(" "));
      item.appendChild(link);
    }
    action("Open", data.link, "");
    if (options.button && typeof options.button === "object") {
      action(options.button.label || "Open", options.button.url, "button");
    }
    var dismiss = document.createElement("button");
    dismiss.type = "button";
    dismiss.className = "flash-dismiss";
    dismiss.dataset.act = "";
    dismiss.dataset.dismiss = "";
    dismiss.setAttribute("aria-label", "Dismiss");
    dismiss.textContent = "×";
    item.appendChild(document.createTextNode(" "));
    item.appendChild(dismiss);
    area.appendChild(item);
    watchFlash(item);
  }

  function setLiveState(state) {
    var element = document.getElementById("live-state");
    document.body.dataset.liveState = state;
    if (state !== "live") { delete document.body.dataset.live; }
    if (element) {
      element.dataset.state = state;
      element.textContent = STATE_TEXT[state] || state;
    }
  }

  function boot() {
    var body = document.body;
    // Flashes from the server are watched even when live updates cannot start.
    Array.prototype.forEach.call(document.querySelectorAll("#flash [data-message-id]"), watchFlash);
    setInterval(tickFlashes, TICK_MS);
    if (!body.dataset.ticketUrl) { return; }  // signed out: nothing to connect
    if (typeof autobahn === "undefined") {
      setLiveState("unavailable");
      return;
    }
    var live = new LiveConnection({ ticketUrl: body.dataset.ticketUrl, onState: setLiveState });
    var root = document.querySelector('[data-page="submission"]');
    var page = root ? new SubmissionPage(root, live) : null;
    if (body.dataset.userId) {
      live.subscribe("user." + body.dataset.userId, function (envelope) {
        var type = String(envelope.type || "");
        if (type === "message.acked") {
          takeDownFlash(envelope.data);
        } else if (type.indexOf("flash") !== -1 || type.indexOf("message") === 0) {
          showFlash(envelope);
        }
      }, {
        subscribed: function () {
          // The submission page says "live" only once its own topic is subscribed.
          if (!page) { document.body.dataset.live = "1"; }
        }
      });
    }
    if (page) { page.start(); }
    Array.prototype.forEach.call(document.querySelectorAll("table[data-live-list]"), function (table) {
      new SubmissionList(table, live).start();
    });
    window.Herald = { live: live, submissionPage: page };
    live.start();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", boot);
  } else {
    boot();
  }
}());
