/*
 * Herald's page boot: one live connection per page, the flashes, and the live
 * parts of the page it is on (see herald-live.js for the load order).
 */
(function () {
  "use strict";

  function boot() {
    var body = document.body;
    var Live = window.HeraldLive;
    var Submission = window.HeraldSubmission;
    // Flashes from the server are watched even when live updates cannot start.
    window.HeraldFlash.start();
    if (!body.dataset.ticketUrl) { return; }  // signed out: nothing to connect
    if (typeof autobahn === "undefined") {
      Live.setLiveState("unavailable");
      return;
    }
    var live = new Live.LiveConnection({ ticketUrl: body.dataset.ticketUrl, onState: Live.setLiveState });
    var root = document.querySelector('[data-page="submission"]');
    var page = root ? new Submission.SubmissionPage(root, live) : null;
    if (body.dataset.userId) {
      window.HeraldFlash.follow(live, body.dataset.userId, body.dataset.courseIds, function () {
        // The submission page says "live" only once its own topic is subscribed.
        if (!page) { body.dataset.live = "1"; }
      });
    }
    if (page) { page.start(); }
    Array.prototype.forEach.call(document.querySelectorAll("table[data-live-list]"), function (table) {
      new Submission.SubmissionList(table, live).start();
    });
    var marking = document.querySelector("[data-marking]");
    if (marking) { new window.HeraldMarking.MarkingPanel(marking, live).start(); }
    if (window.HeraldQueues) { window.HeraldQueues.start(live); }
    if (window.HeraldDashboard) { window.HeraldDashboard.start(live); }
    if (window.HeraldTasks) { window.HeraldTasks.start(live); }
    window.Herald = { live: live, submissionPage: page };
    live.start();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", boot);
  } else {
    boot();
  }
}());
