/*
 * Flash messages on every page: the ones the server rendered and the ones that
 * arrive live on user.{id}.
 */
(function () {
  "use strict";

  var cssToken = window.HeraldLive.cssToken;
  var csrfToken = window.HeraldLive.csrfToken;

  /* Flashes: a flash counts as seen once it has been on screen (page visible, at
     least half in view) for SEEN_AFTER_MS, or the user acted on it; then the page
     acknowledges it, and it stops coming back on later page views. */
  var SEEN_AFTER_MS = 3000;
  var TICK_MS = 250;
  // Local paths only, as the server's local_path filter: browsers drop tabs and
  // newlines from URLs and read "/\host" as "//host", another site.
  var LOCAL_PATH = /^\/(?![\/\\])[^\\\u0000-\u001f]*$/;
  var watchedFlashes = [];
  // Acknowledged here: never shown again by this page, even if a resync races the ack.
  var ackedHere = {};
  // This page's id in acknowledgements, so their echo does not take its own flashes down.
  var TAB_ID = Math.random().toString(36).slice(2, 12) || "tab";
  var flashObserver = typeof IntersectionObserver === "function"
    ? new IntersectionObserver(function (entries) {
      entries.forEach(function (entry) { entry.target.heraldInView = entry.isIntersecting; });
    }, { threshold: 0.5 })
    : null;

  function ackFlash(item) {
    var id = item.dataset.messageId || "";
    if (item.dataset.acked === "1" || !/^\d+$/.test(id)) { return; }
    item.dataset.acked = "1";
    ackedHere[id] = true;
    // keepalive: the acknowledgement survives the click that navigates away.
    fetch("/api/messages/" + id + "/ack", {
      method: "POST",
      credentials: "same-origin",
      keepalive: true,
      headers: { "X-CSRF-Token": csrfToken(), "X-Herald-Tab": TAB_ID, Accept: "application/json" }
    }).then(function (response) {
      if (!response.ok && response.status !== 404) { unacked(); }
    }, unacked);
    function unacked() {  // not recorded: counted as seen again later
      delete item.dataset.acked;
      delete ackedHere[id];
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
    if (typeof data.id === "number" && (ackedHere[String(data.id)] ||
        area.querySelector('[data-message-id="' + String(data.id) + '"]'))) { return; }
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

  /* Watch the flashes the server rendered, and count time on screen from now on. */
  function start() {
    Array.prototype.forEach.call(document.querySelectorAll("#flash [data-message-id]"), watchFlash);
    setInterval(tickFlashes, TICK_MS);
  }

  /* Follow the user's topic: new flashes, and acknowledgements from other tabs. On
     every (re)subscribe, show the unseen flashes published while not subscribed. */
  function follow(live, userId, subscribed) {
    live.subscribe("user." + userId, function (envelope) {
      var type = String(envelope.type || "");
      if (type === "message.acked") {
        takeDownFlash(envelope.data);
      } else if (type === "flash") {
        showFlash(envelope);
      }
    }, {
      subscribed: function () {
        if (subscribed) { subscribed(); }
        window.HeraldLive.getJson("/api/messages?unread=1").then(function (messages) {
          messages.forEach(function (message) {
            if (message.kind === "flash") { showFlash({ data: message }); }
          });
        }).catch(function () { /* shown on the next page view instead */ });
      }
    });
  }

  window.HeraldFlash = { start: start, follow: follow };
}());
