/*
 * Herald's live connection (plain JS, no build step; the page scripts load in order:
 * herald-live.js, herald-flash.js, herald-submission.js, herald-marking.js, herald-tasks.js,
 * the admin pages' scripts, and herald.js last).
 *
 * LiveConnection: one WAMP connection per page, authenticated with a fresh
 * single-use ticket from /api/wamp/ticket on every connect. autobahn-js stops
 * auto-reconnecting after an abort (e.g. the router's authenticator was not
 * registered yet), so its own retries are off (max_retries: 0) and this class
 * reconnects after ANY close, with exponential backoff and jitter, and
 * re-subscribes every topic on every open; each subscription's `subscribed` hook
 * is where a page resyncs what it missed while not subscribed.
 *
 * Several router nodes: the ticket names every node's URL (`urls`). A tab starts at
 * the node it used last (sessionStorage), else at a random one, so a cluster's
 * browsers spread over its nodes; after a failed connect or a lost connection it
 * tries the next node, and only backs off once a whole round of nodes has failed.
 *
 * Data only ever reaches the DOM through textContent and attributes, never
 * innerHTML. Server data comes in through data-* attributes (CSP: no inline JS).
 */
(function () {
  "use strict";

  var BACKOFF_BASE_MS = 500;
  var BACKOFF_MAX_MS = 30000;
  var ROUTER_KEY = "herald.router";
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

  /* A state-changing call to the JSON API, with the page's CSRF token; resolves with
     the answer, rejects with an Error carrying the server's message for a person. */
  function sendJson(method, url, body) {
    var headers = { Accept: "application/json", "X-CSRF-Token": csrfToken() };
    if (body !== undefined) { headers["Content-Type"] = "application/json"; }
    return fetch(url, {
      method: method,
      credentials: "same-origin",
      headers: headers,
      body: body === undefined ? undefined : JSON.stringify(body)
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (answer) {
        if (!response.ok) {
          throw new Error(answer.message || "The server answered " + response.status + ".");
        }
        return answer;
      });
    });
  }

  /* A refresh for a live panel: run fetchOnce (returning a promise) one at a time and
     at most once every minGapMs; calls meanwhile make exactly one more run afterwards,
     so the last run always starts after the last call and its answer is the truth. */
  function coalesced(fetchOnce, minGapMs) {
    var running = false;
    var again = false;
    var timer = null;
    var last = 0;
    function run() {
      if (running || timer !== null) {
        again = true;
        return;
      }
      var wait = last + (minGapMs || 0) - Date.now();
      if (wait > 0) {
        timer = setTimeout(function () {
          timer = null;
          run();
        }, wait);
        return;
      }
      running = true;
      again = false;
      last = Date.now();
      Promise.resolve().then(fetchOnce).catch(function () { /* the next call tries again */ })
        .then(function () {
          running = false;
          if (again) { run(); }
        });
    }
    return run;
  }

  /* An ISO time as the reader's own clock says it. */
  function localTime(iso) {
    var moment = new Date(iso);
    return isNaN(moment.getTime()) ? String(iso) : moment.toLocaleString();
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

  /* The router node this tab last joined, or null (storage may be off). */
  function storedRouter() {
    try {
      return window.sessionStorage.getItem(ROUTER_KEY);
    } catch (e) {
      return null;
    }
  }

  function storeRouter(url) {
    try {
      window.sessionStorage.setItem(ROUTER_KEY, url);
    } catch (e) { /* a tab without storage just picks again next time */ }
  }

  /* The ticket's router URLs: `urls` from a cluster-aware server, else its one `url`. */
  function routerUrls(grant) {
    var urls = Array.isArray(grant.urls) ? grant.urls.filter(function (url) {
      return typeof url === "string" && url;
    }) : [];
    return urls.length ? urls : [grant.url];
  }

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") || "" : "";
  }

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
    this.url = null;  // the router node of the current (or last) connect
    this.urlCount = 1;
    this.moveOn = false;  // the last connect to this.url failed or was lost
  }

  /* The node to connect to: the current one while it works, the next one after it
     failed, and for a tab's first connect the node it used before or a random one. */
  LiveConnection.prototype._pickUrl = function (urls) {
    var index = urls.indexOf(this.url);
    if (index < 0) {
      index = urls.indexOf(storedRouter());
      if (index >= 0 && this.moveOn) { index = (index + 1) % urls.length; }
    } else if (this.moveOn) {
      index = (index + 1) % urls.length;
    }
    if (index < 0) { index = Math.floor(Math.random() * urls.length); }
    this.moveOn = false;
    return urls[index];
  };

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
      var urls = routerUrls(grant);
      var url = self._pickUrl(urls);
      self.url = url;
      self.urlCount = urls.length;
      var connection = new autobahn.Connection({
        url: url,
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
        storeRouter(url);
        self._setState("live");
        self.subscriptions.forEach(function (sub) { self._subscribeOne(session, sub); });
      };
      connection.onclose = function (reason, details) {
        if (connection === self.connection) {
          self.connection = null;
          self.session = null;
          self.moveOn = true;  // unreachable, refused or lost: try the next node
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
    // Back off per round of nodes: a lost node's tabs move to the next one at once.
    var delay = backoffDelay(Math.floor(this.attempt / this.urlCount));
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

  function setLiveState(state) {
    var element = document.getElementById("live-state");
    document.body.dataset.liveState = state;
    if (state !== "live") { delete document.body.dataset.live; }
    if (element) {
      element.dataset.state = state;
      element.textContent = STATE_TEXT[state] || state;
    }
  }

  window.HeraldLive = {
    LiveConnection: LiveConnection,
    backoffDelay: backoffDelay,
    getJson: getJson,
    sendJson: sendJson,
    localTime: localTime,
    coalesced: coalesced,
    cssToken: cssToken,
    csrfToken: csrfToken,
    setLiveState: setLiveState
  };
}());
