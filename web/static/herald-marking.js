/*
 * The marking panel of an assignment page (staff): live counts of submitted,
 * processed, graded and released work, the grade forms, and the release form.
 *
 * Every upload, finished pipeline, grade and release announces itself on
 * assignment.{id} (marking.progress, grades.released); the panel answers each
 * announcement, and each (re)subscribe, by fetching the counts from the API.
 * Announcements carry no figures (students may follow the topic too), and the
 * newest fetch is the truth whatever order concurrent announcements arrive in.
 *
 * The forms work without this script (they post and come back to the page); with
 * it they go to the JSON API and the page, with its live connection, stays put.
 */
(function () {
  "use strict";

  var Live = window.HeraldLive;
  var localTime = Live.localTime;

  // ---------------------------------------------------------------------------
  function MarkingPanel(root, live) {
    this.root = root;
    this.live = live;
    this.assignmentId = root.dataset.assignmentId;
    this.url = root.dataset.markingUrl;
    var self = this;
    // One fetch at a time; announcements during a fetch make one more afterwards.
    this.refresh = Live.coalesced(function () { return self.fetchMarking(); }, 0);
    this.status = root.querySelector('[data-field="marking-status"]');
  }

  MarkingPanel.prototype.start = function () {
    var self = this;
    if (!/^\d+$/.test(this.assignmentId || "")) { return; }
    this.live.subscribe("assignment." + this.assignmentId, function () { self.refresh(); }, {
      // Announcements made while not subscribed are lost: catch up.
      subscribed: function () {
        self.root.dataset.live = "1";
        self.refresh();
      }
    });
    var form = this.root.querySelector("form[data-release-form]");
    if (form) { this.enhanceRelease(form); }
    Array.prototype.forEach.call(document.querySelectorAll("form[data-grade-form]"), function (gradeForm) {
      self.enhanceGrade(gradeForm);
    });
    this.showScheduledTimes();
  };

  MarkingPanel.prototype.fetchMarking = function () {
    var self = this;
    return Live.getJson(this.url + "?submissions=" + this.rowIds().join(",")).then(function (marking) {
      self.render(marking);
    });
  };

  MarkingPanel.prototype.rowIds = function () {
    var rows = document.querySelectorAll("form[data-grade-form]");
    var ids = [];
    Array.prototype.forEach.call(rows, function (form) {
      var row = form.closest("tr[data-submission-id]");
      if (row && /^\d+$/.test(row.dataset.submissionId)) { ids.push(row.dataset.submissionId); }
    });
    return ids;
  };

  MarkingPanel.prototype.render = function (marking) {
    var root = this.root;
    var grades = marking.grades || {};
    Array.prototype.forEach.call(document.querySelectorAll("form[data-grade-form]"), function (form) {
      var row = form.closest("tr[data-submission-id]");
      var known = row ? grades[row.dataset.submissionId] : null;
      var state = form.querySelector('[data-field="grade-state"]');
      if (!known || !state || form.dataset.saving) { return; }
      state.className = "muted";
      state.textContent = known.released ? "released" : (known.grade ? "not released" : "");
    });
    ["submitted", "processed", "graded", "released"].forEach(function (name) {
      var cell = root.querySelector('[data-count="' + name + '"]');
      if (cell && typeof marking[name] === "number") { cell.textContent = String(marking[name]); }
    });
    var list = root.querySelector('[data-field="scheduled"]');
    if (!list || !Array.isArray(marking.scheduled)) { return; }
    while (list.firstChild) { list.removeChild(list.firstChild); }
    marking.scheduled.forEach(function (release) {
      var item = document.createElement("li");
      item.dataset.taskId = String(release.task);
      item.appendChild(document.createTextNode("Release scheduled for "));
      var time = document.createElement("time");
      time.setAttribute("datetime", String(release.at));
      time.textContent = localTime(release.at);
      item.appendChild(time);
      list.appendChild(item);
    });
  };

  MarkingPanel.prototype.showScheduledTimes = function () {
    Array.prototype.forEach.call(this.root.querySelectorAll("time[datetime]"), function (time) {
      time.textContent = localTime(time.getAttribute("datetime"));
    });
  };

  MarkingPanel.prototype.say = function (text, isError) {
    if (!this.status) { return; }
    this.status.textContent = text;
    this.status.className = isError ? "error-message" : "muted";
  };

  MarkingPanel.prototype.enhanceRelease = function (form) {
    var self = this;
    var zone = "";
    try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) { zone = ""; }
    // The form route reads the local time in this zone; the JSON route gets an instant.
    var tz = form.querySelector('[data-field="tz"]');
    if (tz && zone) { tz.value = zone; }
    var zoneLabel = form.querySelector('[data-field="zone"]');
    if (zoneLabel && zone) { zoneLabel.textContent = "(" + zone + ")"; }
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var when = event.submitter ? event.submitter.value : "now";
      var at = null;
      if (when === "at") {
        var input = form.querySelector('input[name="at"]');
        var moment = input && input.value ? new Date(input.value) : null;
        if (!moment || isNaN(moment.getTime())) {
          self.say("Choose the date and time to release the grades at.", true);
          return;
        }
        at = moment.toISOString();
      }
      var email = form.querySelector('[data-field="email"]');
      var body = { at: at, email: Boolean(email && email.checked) };
      Live.sendJson("POST", "/api/assignments/" + self.assignmentId + "/release", body).then(function () {
        self.say(at === null ? "Releasing the grades now." : "Release scheduled for " + localTime(at) + ".", false);
        self.refresh();
      }, function (error) {
        self.say(error.message, true);
      });
    });
  };

  MarkingPanel.prototype.enhanceGrade = function (form) {
    var row = form.closest("tr[data-submission-id]");
    var id = row ? row.dataset.submissionId : "";
    if (!/^\d+$/.test(id)) { return; }
    var input = form.querySelector('input[name="grade"]');
    var state = form.querySelector('[data-field="grade-state"]');
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      form.dataset.saving = "1";
      Live.sendJson("PUT", "/api/submissions/" + id + "/grade", { grade: input.value }).then(function (answer) {
        input.value = answer.grade;
        form.dataset.saved = answer.grade;
        if (state) {
          state.className = "muted";
          state.textContent = state.textContent === "released" ? "released" : "not released";
        }
      }, function (error) {
        if (state) {
          state.textContent = error.message;
          state.className = "error-message";
        }
      }).then(function () { delete form.dataset.saving; });
    });
  };

  window.HeraldMarking = { MarkingPanel: MarkingPanel };
}());
