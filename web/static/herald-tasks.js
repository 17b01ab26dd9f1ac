/*
 * The task pages, live: the list on /tasks (TaskList: admins' Background Tasks
 * screen and everyone's My tasks) and one task on /tasks/{id} (TaskDetail).
 *
 * Both follow the topic the server names in data-topic: admin.tasks for admins
 * (tasks.changed batches, task.failed alerts), user.{id} for everyone else
 * (task.state). The page was drawn from the DB at the topic's data-seq: an event
 * with a higher seq is newer than what is shown, a lower one is not. Each row keeps
 * the seq of the last news it took, so an API answer that an event has overtaken
 * never rolls a row back.
 *
 * Rows already shown change in place; tasks that are not shown never reshuffle the
 * page: the list asks the API how many new tasks match its filters and offers
 * "N new tasks — show". Every (re)subscribe refreshes the shown rows from the API,
 * since events published while not subscribed are lost.
 *
 * The cancel and retry buttons are forms that work without this script; with it
 * they go to the JSON API and the page stays put. Text only ever reaches the DOM
 * through textContent and attributes.
 */
(function () {
  "use strict";

  var Live = window.HeraldLive;
  var localTime = Live.localTime;
  var TERMINAL = ["done", "failed", "cancelled", "skipped"];
  var RETRYABLE = ["failed", "cancelled"];
  // At most one "how many new tasks?" question per this many ms, however busy the queue.
  var NEW_CHECK_MS = 1000;
  var NEW_LIMIT = 100;
  // Rows that ended are refreshed together, a moment after the first of them ends.
  var REFRESH_AFTER_MS = 300;
  var ID = /^\d+$/;

  /* As the server's duration_text: 0.4 s, 12 s, 3 min 4 s, 2 h 5 min. */
  function durationText(seconds) {
    if (typeof seconds !== "number" || !isFinite(seconds)) { return "—"; }
    if (seconds < 10) { return seconds.toFixed(1) + " s"; }
    var whole = Math.round(seconds);
    if (whole < 60) { return whole + " s"; }
    if (whole < 3600) { return Math.floor(whole / 60) + " min " + (whole % 60) + " s"; }
    return Math.floor(whole / 3600) + " h " + Math.floor((whole % 3600) / 60) + " min";
  }

  function durationOf(state) {
    if (typeof state.duration === "number") { return state.duration; }
    if (!state.started_at || !state.finished_at) { return null; }
    var seconds = (new Date(state.finished_at) - new Date(state.started_at)) / 1000;
    return isNaN(seconds) ? null : Math.max(0, seconds);
  }

  function clear(element) {
    while (element.firstChild) { element.removeChild(element.firstChild); }
  }

  function field(root, name) {
    return root.querySelector('[data-field="' + name + '"]');
  }

  function setText(root, name, text) {
    var element = field(root, name);
    if (element) { element.textContent = text; }
  }

  function timeElement(iso) {
    var time = document.createElement("time");
    time.setAttribute("datetime", String(iso));
    time.textContent = localTime(iso);
    return time;
  }

  function setTime(root, name, iso) {
    var cell = field(root, name);
    if (!cell) { return; }
    clear(cell);
    cell.appendChild(iso ? timeElement(iso) : document.createTextNode("—"));
  }

  function showLocalTimes(root) {
    Array.prototype.forEach.call(root.querySelectorAll("time[datetime]"), function (time) {
      time.textContent = localTime(time.getAttribute("datetime"));
    });
  }

  function badge(status) {
    var span = document.createElement("span");
    span.className = "badge badge-" + Live.cssToken(status);
    span.textContent = String(status);
    return span;
  }

  function fileSize(bytes) {
    if (typeof bytes !== "number") { return "—"; }
    if (bytes < 1024) { return bytes + " bytes"; }
    if (bytes < 1024 * 1024) { return (bytes / 1024).toFixed(1) + " KB"; }
    return (bytes / 1024 / 1024).toFixed(1) + " MB";
  }

  /* The output cell: a download link, or when and why it is gone. */
  function renderOutput(cell, output) {
    if (!cell) { return; }
    clear(cell);
    var note = document.createElement("span");
    note.className = "muted";
    if (!output) {
      note.textContent = "—";
      cell.appendChild(note);
      return;
    }
    var url = String(output.url || "");
    if (output.available && /^\/api\/tasks\/\d+\/output$/.test(url)) {
      var link = document.createElement("a");
      link.href = url;
      link.dataset.field = "download";
      link.setAttribute("download", "");
      link.textContent = String(output.filename);
      cell.appendChild(link);
      note.appendChild(document.createTextNode(" (" + fileSize(output.size) + "; kept until "));
      note.appendChild(output.expires_at ? timeElement(output.expires_at) : document.createTextNode("—"));
      note.appendChild(document.createTextNode(")"));
    } else if (output.purged_at) {
      note.appendChild(document.createTextNode(String(output.filename) + ": deleted on "));
      note.appendChild(timeElement(output.purged_at));
      note.appendChild(document.createTextNode(" (kept " + Number(output.retention_days) + " days)"));
    } else {
      note.textContent = String(output.filename) + ": no longer available";
    }
    cell.appendChild(note);
  }

  /* The parts a row and the task page share: status, progress, detail, times, buttons. */
  function applyState(root, state) {
    if (state.status) {
      root.dataset.status = state.status;
      var statusCell = field(root, "status");
      if (statusCell) {
        clear(statusCell);
        statusCell.appendChild(badge(state.status));
      }
    }
    if (typeof state.progress === "number") {
      var value = Math.max(0, Math.min(100, Math.round(state.progress)));
      var bar = field(root, "bar");
      if (bar) {
        bar.value = value;
        bar.setAttribute("aria-valuenow", String(value));
        bar.textContent = value + "%";
      }
      setText(root, "progress", value + "%");
    }
    if ("detail" in state) { setText(root, "detail", state.detail || ""); }
    if ("started_at" in state) { setTime(root, "started_at", state.started_at); }
    if ("finished_at" in state) {
      setTime(root, "finished_at", state.finished_at);
      setText(root, "duration", durationText(durationOf(state)));
    }
    if ("queued_at" in state) { setTime(root, "queued_at", state.queued_at); }
    if (typeof state.attempts === "number") {
      setText(root, "attempts", state.attempts + "/" + state.max_attempts);
    }
    if ("output" in state) { renderOutput(field(root, "output"), state.output); }
    var status = root.dataset.status;
    var cancel = root.querySelector('form[data-task-action="cancel"]');
    if (cancel) { cancel.hidden = TERMINAL.indexOf(status) !== -1; }
    var retry = root.querySelector('form[data-task-action="retry"]');
    if (retry) { retry.hidden = RETRYABLE.indexOf(status) === -1; }
  }

  /* The states an envelope carries: a batch (tasks.changed), or one (task.state, task.failed). */
  function statesOf(envelope) {
    var data = envelope.data || {};
    if (envelope.type === "tasks.changed") { return Array.isArray(data.tasks) ? data.tasks : []; }
    if (envelope.type === "task.state" || envelope.type === "task.failed") { return [data]; }
    return [];
  }

  /* Cancel and retry go to the JSON API; `done` runs after either answer. */
  function enhanceActions(root, say, done) {
    Array.prototype.forEach.call(root.querySelectorAll("form[data-task-action]"), function (form) {
      var match = /^\/tasks\/(\d+)\/(cancel|retry)$/.exec(form.getAttribute("action") || "");
      if (!match) { return; }
      form.addEventListener("submit", function (event) {
        event.preventDefault();
        var button = form.querySelector("button");
        if (button) { button.disabled = true; }
        Live.sendJson("POST", "/api/tasks/" + match[1] + "/" + match[2]).then(function (answer) {
          say(match[2] === "retry" ? "Task " + match[1] + " is queued again." :
            "Task " + match[1] + ": " + (answer.message || "cancelled."), false);
        }, function (error) {
          say(error.message, true);
        }).then(function () {
          if (button) { button.disabled = false; }
          done(match[1]);
        });
      });
    });
  }

  function sayIn(element) {
    return function (text, isError) {
      if (!element) { return; }
      element.textContent = text;
      element.className = isError ? "error-message" : "muted";
    };
  }

  // ---------------------------------------------------------------------------
  function TaskList(root, live) {
    this.root = root;
    this.live = live;
    this.topic = root.dataset.topic;
    this.query = root.dataset.query || "";
    this.firstPage = root.dataset.firstPage === "1";
    this.pageSeq = parseInt(root.dataset.seq, 10) || 0;
    this.rows = {};
    this.top = 0;
    this.refreshing = false;
    this.refreshAgain = false;
    this.checking = false;
    this.checkAgain = false;
    this.checkTimer = null;
    this.refreshTimer = null;
    this.notice = document.querySelector('[data-field="new-tasks"]');
    this.say = sayIn(document.querySelector('[data-field="action-status"]'));
  }

  TaskList.prototype.start = function () {
    var self = this;
    Array.prototype.forEach.call(this.root.querySelectorAll("tr[data-task-id]"), function (row) {
      var id = row.dataset.taskId;
      if (!ID.test(id)) { return; }
      row.heraldSeq = self.pageSeq;
      self.rows[id] = row;
      self.top = Math.max(self.top, Number(id));
    });
    showLocalTimes(this.root);
    enhanceActions(this.root, this.say, function () { self.refresh(); });
    this.live.subscribe(this.topic, function (envelope) { self.onEvent(envelope); }, {
      subscribed: function () {
        self.root.dataset.live = "1";
        self.refresh();
        self.checkNew();
      }
    });
  };

  TaskList.prototype.onEvent = function (envelope) {
    var self = this;
    if (typeof envelope.seq !== "number") { return; }
    var unseen = false;
    var ended = false;
    statesOf(envelope).forEach(function (state) {
      if (!state || !ID.test(String(state.id))) { return; }
      var row = self.rows[String(state.id)];
      if (!row) {
        if (Number(state.id) > self.top) { unseen = true; }
        return;
      }
      if (envelope.type === "task.failed") {
        row.classList.add("task-alert");
        if (typeof state.error === "string") { setText(row, "error", state.error); }
      }
      if (envelope.seq <= row.heraldSeq) { return; }  // the row already shows newer news
      row.heraldSeq = envelope.seq;
      var before = row.dataset.status;
      self.apply(row, state);
      // An ending brings what events do not carry (the output, the error): fetch it.
      if (state.status !== before && TERMINAL.indexOf(state.status) !== -1) { ended = true; }
    });
    if (unseen) { this.scheduleCheck(); }
    if (ended) { this.scheduleRefresh(); }
  };

  TaskList.prototype.scheduleRefresh = function () {
    var self = this;
    if (this.refreshTimer !== null) { return; }
    this.refreshTimer = setTimeout(function () {
      self.refreshTimer = null;
      self.refresh();
    }, REFRESH_AFTER_MS);
  };

  TaskList.prototype.apply = function (row, state) {
    applyState(row, state);
    if ("error" in state) {
      setText(row, "error", state.status !== "done" && state.error ? state.error : "");
    } else if (state.status === "failed" && state.detail) {
      setText(row, "error", state.detail);  // events carry the reason as the detail
    } else if (state.status && state.status !== "failed") {
      setText(row, "error", "");
    }
  };

  /* The shown rows from the API; one request at a time, one more if asked meanwhile. */
  TaskList.prototype.refresh = function () {
    var self = this;
    var ids = Object.keys(this.rows);
    if (!ids.length) { return; }
    if (this.refreshing) {
      this.refreshAgain = true;
      return;
    }
    this.refreshing = true;
    Live.getJson("/api/tasks?ids=" + ids.join(",")).then(function (answer) {
      (answer.tasks || []).forEach(function (state) {
        var row = self.rows[String(state.id)];
        if (!row || answer.seq < row.heraldSeq) { return; }
        row.heraldSeq = answer.seq;
        self.apply(row, state);
      });
    }).catch(function () { /* the next event or reconnect tries again */ }).then(function () {
      self.refreshing = false;
      if (self.refreshAgain) {
        self.refreshAgain = false;
        self.refresh();
      }
    });
  };

  TaskList.prototype.scheduleCheck = function () {
    var self = this;
    if (!this.firstPage || this.checkTimer !== null) { return; }
    this.checkTimer = setTimeout(function () {
      self.checkTimer = null;
      self.checkNew();
    }, NEW_CHECK_MS);
  };

  /* How many tasks newer than the newest shown match the page's filters. */
  TaskList.prototype.checkNew = function () {
    var self = this;
    if (!this.firstPage) { return; }
    if (this.checking) {
      this.checkAgain = true;
      return;
    }
    this.checking = true;
    // Newer than the newest shown (on an empty page: any), the nearest NEW_LIMIT of them.
    var after = this.top > 0 ? "after=" + this.top + "&" : "";
    var url = "/api/tasks?" + (this.query ? this.query + "&" : "") + after + "limit=" + NEW_LIMIT;
    Live.getJson(url).then(function (answer) {
      var count = (answer.tasks || []).length;
      var more = self.top > 0 ? answer.prev !== null : answer.next !== null;
      self.showNew(count, Boolean(more));
    }).catch(function () { /* asked again on the next event */ }).then(function () {
      self.checking = false;
      if (self.checkAgain) {
        self.checkAgain = false;
        self.scheduleCheck();
      }
    });
  };

  TaskList.prototype.showNew = function (count, more) {
    if (!this.notice) { return; }
    this.notice.hidden = count === 0;
    this.root.dataset.newTasks = String(count);
    var link = field(this.notice, "new-tasks-link");
    if (link && count > 0) {
      link.textContent = (more ? count + "+" : String(count)) + " new task" +
        (count === 1 && !more ? "" : "s") + " — show";
    }
  };

  // ---------------------------------------------------------------------------
  function TaskDetail(root, live) {
    this.root = root;
    this.live = live;
    this.id = root.dataset.taskId;
    this.topic = root.dataset.topic;
    this.apiUrl = root.dataset.apiUrl;
    this.seq = parseInt(root.dataset.seq, 10) || 0;
    this.say = sayIn(field(root, "action-status"));
    var self = this;
    // One fetch at a time; events during a fetch make one more afterwards.
    this.refresh = Live.coalesced(function () { return self.fetchTask(); }, 0);
  }

  TaskDetail.prototype.start = function () {
    var self = this;
    if (!ID.test(this.id || "")) { return; }
    showLocalTimes(this.root);
    enhanceActions(this.root, this.say, function () { self.refresh(); });
    this.live.subscribe(this.topic, function (envelope) { self.onEvent(envelope); }, {
      subscribed: function () {
        self.root.dataset.live = "1";
        self.refresh();
      }
    });
  };

  TaskDetail.prototype.onEvent = function (envelope) {
    var self = this;
    if (typeof envelope.seq !== "number" || envelope.seq <= this.seq) { return; }
    statesOf(envelope).forEach(function (state) {
      if (!state || String(state.id) !== self.id) { return; }
      self.seq = envelope.seq;
      var before = self.root.dataset.status;
      applyState(self.root, state);
      // A new status brings a timeline row, perhaps a traceback or an output: fetch them.
      if (state.status !== before || envelope.type === "task.failed") { self.refresh(); }
    });
  };

  TaskDetail.prototype.fetchTask = function () {
    var self = this;
    return Live.getJson(this.apiUrl).then(function (task) {
      if (task.seq >= self.seq) {
        self.seq = task.seq;
        self.render(task);
      }
    });
  };

  TaskDetail.prototype.render = function (task) {
    var root = this.root;
    applyState(root, task);
    var errorSection = field(root, "error-section");
    if (errorSection) {
      errorSection.hidden = !task.traceback;
      setText(root, "traceback", task.traceback || "");
    }
    var resultSection = field(root, "result-section");
    if (resultSection) {
      var hasResult = task.result !== null && task.result !== undefined;
      resultSection.hidden = !hasResult;
      setText(root, "result", hasResult ? JSON.stringify(task.result, null, 2) : "");
    }
    var events = field(root, "events");
    if (events && Array.isArray(task.events)) {
      clear(events);
      task.events.forEach(function (event) {
        var row = document.createElement("tr");
        var cells = [timeElement(event.at), badge(event.status),
          document.createTextNode(String(event.attempt)), document.createTextNode(event.detail || "")];
        cells.forEach(function (content) {
          var cell = document.createElement("td");
          cell.appendChild(content);
          row.appendChild(cell);
        });
        events.appendChild(row);
      });
    }
  };

  function start(live) {
    var list = document.querySelector("[data-task-list]");
    if (list) { new TaskList(list, live).start(); }
    var detail = document.querySelector("[data-task-detail]");
    if (detail) { new TaskDetail(detail, live).start(); }
  }

  window.HeraldTasks = { TaskList: TaskList, TaskDetail: TaskDetail, start: start };
}());
