/*
 * Live submission progress: the submission page (SubmissionPage) and the staff
 * list of an assignment's submissions (SubmissionList).
 *
 * SubmissionPage: every (re)subscribe resyncs from GET /api/submissions/{id};
 * events with seq <= lastSeq are ignored, a gap (seq > lastSeq + 1) triggers a
 * resync, the next seq is applied.
 */
(function () {
  "use strict";

  var live = window.HeraldLive;
  var getJson = live.getJson;
  var backoffDelay = live.backoffDelay;
  var cssToken = live.cssToken;
  var MAX_PENDING = 500;

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
    if (envelope.type === "grade.released" && typeof data.grade === "string") {
      this.renderGrade(data.grade);
      return true;
    }
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
    this.renderGrade(state.grade);
  };

  SubmissionPage.prototype.renderGrade = function (value) {
    var grade = this.root.querySelector("#grade");
    if (grade) {
      grade.textContent = value === null || value === undefined ? "Not released yet." : String(value);
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
        var gap = row.heraldSeq > 0 && envelope.seq > row.heraldSeq + 1;
        row.heraldSeq = envelope.seq;
        if (gap) {
          // Missed an event: the row's other steps may be stale; the API has them all.
          self.catchUp(row, id);
          return;
        }
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

  window.HeraldSubmission = { SubmissionPage: SubmissionPage, SubmissionList: SubmissionList };
}());
