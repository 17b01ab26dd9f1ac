/*
 * Flash messages and broadcasts on every page: the ones the server rendered and the
 * ones that arrive live (flashes on user.{id}; broadcasts on `broadcast` and on
 * course.{id} for each course the user is enrolled in, <body data-course-ids>).
 *
 * Every item carries its own acknowledgement URL (data-ack-url) and a key that is
 * unique across messages and broadcasts (data-flash-key="message:12" or
 * "broadcast:7"); flashes keep data-message-id too.
 */
(function () {
  "use strict";

  var cssToken = window.HeraldLive.cssToken;
  var csrfToken = window.HeraldLive.csrfToken;

  /* An item counts as seen once it has been on screen (page visible, at least half in
     view) for SEEN_AFTER_MS, or the user acted on it; then the page acknowledges it,
     and it stops coming back on later page views. */
  var SEEN_AFTER_MS = 3000;
  var TICK_MS = 250;
  // Local paths only, as the server's local_path filter: browsers drop tabs and
  // newlines from URLs and read "/\host" as "//host", another site.
  var LOCAL_PATH = /^\/(?![\/\\])[^\\\u0000-\u001f]*$/;
  var KEY = /^(message|broadcast):(\d+)$/;
  // Where items are acknowledged: these two API routes, nothing else.
  var ACK_URL = /^\/api\/(messages|broadcasts)\/\d+\/ack$/;
  var ACK_BASE = { message: "/api/messages/", broadcast: "/api/broadcasts/" };
  var ACKED_EVENT = { "message.acked": "message", "broadcast.acked": "broadcast" };
  // GET /api/messages answers at most this many; a full answer may not be all of them.
  var MESSAGE_LIMIT = 100;
  var watchedFlashes = [];
  // Seen, here or in another tab: never shown again by this page, even if a resync
  // races the acknowledgement.
  var seen = {};
  // This page's id in acknowledgements, so their echo does not take its own items down.
  var TAB_ID = Math.random().toString(36).slice(2, 12) || "tab";
  // The keys of the user's unread items once a resync has listed them (null: until
  // then, the nav shows the count the server rendered).
  var unreadKeys = null;
  var flashObserver = typeof IntersectionObserver === "function"
    ? new IntersectionObserver(function (entries) {
      entries.forEach(function (entry) { entry.target.heraldInView = entry.isIntersecting; });
    }, { threshold: 0.5 })
    : null;

  function showUnreadCount() {
    var element = document.getElementById("unread-count");
    if (unreadKeys === null || !element) { return; }
    var count = Object.keys(unreadKeys).length;
    element.textContent = String(count);
    element.hidden = count === 0;
  }

  /* Seen (here or elsewhere): off the unread count, and read on the /messages page. */
  function markRead(key) {
    if (!KEY.test(key)) { return; }
    if (unreadKeys !== null && unreadKeys[key]) {
      delete unreadKeys[key];
      showUnreadCount();
    }
    var row = document.querySelector('[data-inbox-key="' + key + '"]');
    if (row && row.dataset.read !== "1") {
      row.dataset.read = "1";
      var state = row.querySelector('[data-field="state"]');
      if (state) { state.textContent = "Read"; }
      var form = row.querySelector("form[data-mark-read]");
      if (form) { form.remove(); }
    }
  }

  function ackFlash(item) {
    var key = item.dataset.flashKey || "";
    var url = item.dataset.ackUrl || "";
    if (item.dataset.acked === "1" || !KEY.test(key) || !ACK_URL.test(url)) { return; }
    item.dataset.acked = "1";
    seen[key] = true;
    markRead(key);
    // keepalive: the acknowledgement survives the click that navigates away.
    fetch(url, {
      method: "POST",
      credentials: "same-origin",
      keepalive: true,
      headers: { "X-CSRF-Token": csrfToken(), "X-Herald-Tab": TAB_ID, Accept: "application/json" }
    }).then(function (response) {
      if (!response.ok && response.status !== 404) { unacked(); }
    }, unacked);
    function unacked() {  // not recorded: counted as seen again later
      delete item.dataset.acked;
      delete seen[key];
    }
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

  /* Shown on this page (a modal one lives in its <dialog>, outside #flash). */
  function shown(key) {
    return watchedFlashes.some(function (item) {
      return item.isConnected && item.dataset.flashKey === key;
    });
  }

  /* Seen in another tab: take it down here too. The tab that acknowledged it keeps
     showing it (the user is reading it) until it is dismissed or hides itself. */
  function takeDown(kind, data) {
    if (!data || typeof data.id !== "number" || data.tab === TAB_ID) { return; }
    var key = kind + ":" + data.id;
    seen[key] = true;
    markRead(key);
    watchedFlashes.forEach(function (item) {
      if (item.dataset.flashKey === key) {
        item.dataset.acked = "1";
        removeFlash(item);
      }
    });
  }

  /* A flash (kind "message") or a broadcast, from a live event or the messages API. */
  function showFlash(data, kind) {
    if (!data || typeof data.text !== "string" || typeof data.id !== "number") { return; }
    var key = kind + ":" + data.id;
    var area = document.getElementById("flash");
    if (!area || seen[key] || shown(key)) { return; }
    var options = data.options || {};
    var item = document.createElement("div");
    item.className = "flash flash-" + cssToken(data.level || "info");
    item.setAttribute("role", "status");
    item.dataset.flashKey = key;
    item.dataset.ackUrl = typeof data.ack_url === "string" && ACK_URL.test(data.ack_url)
      ? data.ack_url : ACK_BASE[kind] + data.id + "/ack";
    if (kind === "message") { item.dataset.messageId = String(data.id); }
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
    if (unreadKeys !== null && !unreadKeys[key]) {
      unreadKeys[key] = true;
      showUnreadCount();
    }
  }

  /* Watch the items the server rendered, and count time on screen from now on. */
  function start() {
    Array.prototype.forEach.call(document.querySelectorAll("#flash [data-flash-key]"), watchFlash);
    setInterval(tickFlashes, TICK_MS);
  }

  /* Show the unseen flashes and broadcasts published while not subscribed. Each
     (re)subscription asks for one; one that comes while a fetch is under way gets
     another fetch after it, so every subscription is followed by a fetch made after it. */
  var resyncing = false;
  var resyncAgain = false;

  function resync() {
    if (resyncing) {
      resyncAgain = true;
      return;
    }
    resyncing = true;
    window.HeraldLive.getJson("/api/messages?unread=1").then(function (items) {
      var keys = {};
      items.forEach(function (item) {
        var kind = item.kind === "broadcast" ? "broadcast" : "message";
        if (!seen[kind + ":" + item.id]) { keys[kind + ":" + item.id] = true; }
        if (item.kind === "flash" || item.kind === "broadcast") { showFlash(item, kind); }
      });
      unreadKeys = items.length < MESSAGE_LIMIT ? keys : null;
      showUnreadCount();
    }).catch(function () { /* shown on the next page view instead */ }).then(function () {
      resyncing = false;
      if (resyncAgain) {
        resyncAgain = false;
        resync();
      }
    });
  }

  /* Follow the user's topic (new flashes; acknowledgements from other tabs), the
     site-wide `broadcast` topic and course.{id} for each of `courseIds` (the body's
     space-separated data-course-ids). `subscribed` is called once all of them are
     subscribed on a connection, so the page is live for every one of them. */
  function follow(live, userId, courseIds, subscribed) {
    var topics = ["user." + userId, "broadcast"];
    String(courseIds || "").split(/\s+/).forEach(function (id) {
      if (/^[1-9]\d*$/.test(id)) { topics.push("course." + id); }
    });
    var readyIn = null;
    var ready = {};

    function topicReady(topic) {
      if (live.session !== readyIn) {  // a new connection: every topic subscribes again
        readyIn = live.session;
        ready = {};
      }
      ready[topic] = true;
      if (topics.every(function (t) { return ready[t]; }) && subscribed) { subscribed(); }
    }

    function onUserEvent(envelope) {
      var type = String(envelope.type || "");
      if (ACKED_EVENT[type]) {
        takeDown(ACKED_EVENT[type], envelope.data);
      } else if (type === "flash") {
        showFlash(envelope.data, "message");
      }
    }

    function onBroadcast(envelope) {
      if (envelope.type === "broadcast") { showFlash(envelope.data, "broadcast"); }
    }

    topics.forEach(function (topic, index) {
      live.subscribe(topic, index === 0 ? onUserEvent : onBroadcast, {
        subscribed: function () {
          topicReady(topic);
          resync();
        },
        // Refused (e.g. an enrolment ended since the page was rendered): nothing to wait for.
        denied: function () { topicReady(topic); }
      });
    });
  }

  window.HeraldFlash = { start: start, follow: follow };
}());
