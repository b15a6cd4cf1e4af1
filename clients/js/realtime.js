// realtime.js: the browser client of realtime-mq. One dependency-free ES module; the gateway
// serves it at /client/realtime.js and the npm package realtime-mq-client ships this same file.
// Semantics (reconnect, resubscribe, presence state, recovery): docs/clients.md; the frames:
// docs/protocol.md.

const STATES = new Set(["connecting", "connected", "reconnecting", "closed"]);
// A refused upgrade with one of these statuses stops the client: retrying cannot help.
const REFUSED = new Set([400, 401, 403]);
// Close codes of the application range (4000-4999) the gateway uses for itself: reconnect
// (4001 with a fresh token first). Any other one there comes from the server API's
// POST /api/disconnect (default 4000): the application meant to disconnect this user, so the
// client stops instead of coming straight back. Every other close (1012 restart or maximum
// age, 1006 dropped, 1011 ping timeout, ...) reconnects after the backoff.
const RECONNECT_APP_CODES = new Set([4001, 4008, 4029]);
// A connection that stayed up this long resets the backoff: one that opens and is closed at
// once (4029 again and again) keeps backing off instead of looping.
const STABLE_MS = 5000;
// A presence resync refused as too early (rate_limited) is tried again after this.
const RESYNC_RETRY_MS = 1000;

class RealtimeError extends Error {
  constructor(message, code, extra = {}) {
    super(message);
    this.name = "RealtimeError";
    this.code = code;
    Object.assign(this, extra);
  }
}

class Emitter {
  constructor() {
    this._handlers = new Map();
  }

  /** Adds a handler; returns a function that removes it. */
  on(event, handler) {
    let set = this._handlers.get(event);
    if (!set) {
      set = new Set();
      this._handlers.set(event, set);
    }
    set.add(handler);
    return () => this.off(event, handler);
  }

  off(event, handler) {
    const set = this._handlers.get(event);
    if (set) set.delete(handler);
  }

  _emit(event, ...args) {
    const set = this._handlers.get(event);
    if (!set) return 0;
    for (const handler of [...set]) {
      // An application's handler that throws must not stop the client's own frame handling.
      try {
        handler(...args);
      } catch (err) {
        setTimeout(() => {
          throw err;
        });
      }
    }
    return set.size;
  }
}

function deferred() {
  let resolve;
  let reject;
  const promise = new Promise((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // A promise nobody awaits (sub.ready when the app never looks) must not be reported as an
  // unhandled rejection.
  promise.catch(() => {});
  return { promise, resolve, reject };
}

/** "http://h:8080" (a base), "ws://h:8080/ws" or a path such as "/ws" -> the ws:// URL. */
function socketUrl(url) {
  const base = typeof location !== "undefined" ? location.href : undefined;
  const parsed = new URL(url, base);
  if (parsed.protocol === "http:") parsed.protocol = "ws:";
  else if (parsed.protocol === "https:") parsed.protocol = "wss:";
  if (parsed.protocol !== "ws:" && parsed.protocol !== "wss:") {
    throw new TypeError(`unsupported URL scheme: ${parsed.protocol}`);
  }
  if (parsed.pathname === "" || parsed.pathname === "/") parsed.pathname = "/ws";
  parsed.hash = "";
  return parsed;
}

export class Subscription extends Emitter {
  constructor(client, channel, options) {
    super();
    this.client = client;
    this.channel = channel;
    this.listen = [...(options.listen || ["broadcast", "presence"])];
    this.recover = options.recover !== false;
    this.historyCount = options.history;
    /** user_id -> {meta, updated_at}; replaced by every presence_sync, kept by events. */
    this.members = new Map();
    /** The channel's presence version the members map is exact at (null: unknown). */
    this.version = null;
    /** The last broadcast position received on a history channel: {offset, epoch} or null. */
    this.position = null;
    this.active = true;
    this._ready = deferred();
    this.ready = this._ready.promise;
    this._meta = null;
    this._tracked = false;
    this._trackWaiters = [];
    this._chunks = null;
    this._resyncTimer = null;
    this._resyncing = false;
    this._replayExpected = false;
    this._replayTarget = null;
  }

  /** Publishes a broadcast; resolves with the ack (offset and epoch on a history channel). */
  publish(event, payload) {
    return this.client._request({ type: "broadcast", channel: this.channel, event, payload: payload === undefined ? null : payload });
  }

  /** Joins the channel's presence with meta, or updates the meta when already joined. Kept
   * across reconnects: the client joins again with the same meta. */
  track(meta = {}) {
    const type = this._tracked ? "presence_update" : "presence_join";
    this._meta = meta;
    this._tracked = true;
    if (!this.client._open) return this._waitTrack();
    return this.client._request({ type, channel: this.channel, payload: meta }).catch((err) => {
      if (err.code === "disconnected") return this._waitTrack();
      if (type === "presence_join") this._tracked = false;
      throw err;
    });
  }

  /** Leaves the channel's presence. */
  untrack() {
    const wasTracked = this._tracked;
    this._tracked = false;
    this._meta = null;
    this._settleTrack(null, new RealtimeError("untracked", "untracked"));
    if (!wasTracked || !this.client._open) return Promise.resolve();
    return this.client._request({ type: "presence_leave", channel: this.channel }).catch((err) => {
      // The connection went: the gateway leaves for it (and the client does not rejoin).
      if (err.code === "disconnected") return undefined;
      throw err;
    });
  }

  /** A page of the channel's history (history channels only): the gateway's history frame. */
  history({ since = 0, limit = 0 } = {}) {
    return this.client._request({ type: "history", channel: this.channel, since, limit }, "history");
  }

  /** Stops receiving from the channel and leaves its presence. */
  async unsubscribe() {
    if (!this.active) return;
    const tracked = this._tracked;
    this._drop();
    if (!this.client._open) return;
    const sends = [];
    if (tracked) sends.push(this.client._request({ type: "presence_leave", channel: this.channel }));
    sends.push(this.client._request({ type: "unsubscribe", channel: this.channel }));
    try {
      await Promise.all(sends);
    } catch (err) {
      if (err.code !== "disconnected") throw err;
    }
  }

  _drop() {
    this.active = false;
    this._tracked = false;
    clearTimeout(this._resyncTimer);
    this._settleTrack(null, new RealtimeError("unsubscribed", "unsubscribed"));
    this._ready.reject(new RealtimeError("unsubscribed", "unsubscribed"));
    if (this.client._subs.get(this.channel) === this) this.client._subs.delete(this.channel);
  }

  _waitTrack() {
    const waiter = deferred();
    this._trackWaiters.push(waiter);
    return waiter.promise;
  }

  _settleTrack(value, error) {
    const waiters = this._trackWaiters;
    this._trackWaiters = [];
    for (const waiter of waiters) {
      if (error) waiter.reject(error);
      else waiter.resolve(value);
    }
  }

  /** (Re)subscribes on the current connection, recovering with `since` where it can, then
   * joins presence again with the same meta. */
  _restore() {
    const frame = { type: "subscribe", channel: this.channel, listen: this.listen };
    this._replayExpected = false;
    this._replayTarget = null;
    this._resyncing = false;
    if (this.listen.includes("broadcast")) {
      if (this.recover && this.position) {
        frame.since = { offset: this.position.offset, epoch: this.position.epoch };
      } else if (this.historyCount !== undefined && this.historyCount !== null) {
        frame.history = this.historyCount;
        this._replayExpected = this.historyCount > 0;
      } else if (this.recover) {
        // A position to recover from later, even before the channel's first broadcast; a
        // channel without history ignores it (and sends no `subscribed`).
        frame.history = 0;
      }
    }
    this.client
      ._request(frame)
      .then(() => {
        // A replay of the last N that turned out empty leaves no broadcast to take the
        // position from: take the gateway's (the ack follows the replay).
        if (!this.position && this._replayTarget) this.position = this._replayTarget;
        this._ready.resolve(this);
      })
      .catch((err) => {
        if (err.code === "disconnected") return; // the next connection subscribes again
        this._ready.reject(err);
        this._emit("error", err);
        this.client._emit("error", err);
      });
    if (this._tracked) {
      this.client
        ._request({ type: "presence_join", channel: this.channel, payload: this._meta || {} })
        .then((ack) => this._settleTrack(ack, null))
        .catch((err) => {
          if (err.code === "disconnected") return;
          this._tracked = false;
          this._settleTrack(null, err);
          this._emit("error", err);
          this.client._emit("error", err);
        });
    }
  }

  /** A fresh presence_sync after a seq gap: subscribe again with the same listen (no since:
   * the subscription stays live, so broadcasts have no gap). */
  _resync() {
    if (!this.active || !this.client._open || this._resyncTimer || this._resyncing) return;
    this._resyncing = true;
    this.client
      ._request({ type: "subscribe", channel: this.channel, listen: this.listen })
      .then(() => {
        this._resyncing = false;
      })
      .catch((err) => {
        this._resyncing = false;
        if (err.code === "rate_limited" && this.active) {
          this._resyncTimer = setTimeout(() => {
            this._resyncTimer = null;
            this._resync();
          }, RESYNC_RETRY_MS);
        }
      });
  }

  _onBroadcast(frame) {
    if (frame.offset !== undefined && frame.epoch !== undefined) {
      const last = this.position;
      // Exactly once across a recovery: what the client already has is not handed on again.
      if (last && last.epoch === frame.epoch && frame.offset <= last.offset) return;
      this.position = { offset: frame.offset, epoch: frame.epoch };
    }
    this._emit("broadcast", frame);
  }

  _onSubscribed(frame) {
    const info = { recovered: frame.recovered, offset: frame.offset, epoch: frame.epoch };
    if (frame.recovered === true) {
      // The replay that follows moves the position on, broadcast by broadcast.
    } else if (!this._replayExpected || frame.recovered === false) {
      this.position = { offset: frame.offset, epoch: frame.epoch };
    } else {
      this._replayTarget = { offset: frame.offset, epoch: frame.epoch };
    }
    if (frame.recovered !== undefined) this._emit("recovered", info);
  }

  _onPresence(frame) {
    const { type } = frame;
    if (type === "presence_sync") {
      if (frame.chunks && frame.chunks > 1) {
        if (frame.chunk === 1 || !this._chunks) this._chunks = [];
        this._chunks.push(...frame.users);
        if (frame.chunk < frame.chunks) return;
        frame = { ...frame, users: this._chunks };
        this._chunks = null;
      }
      this.members = new Map();
      for (const user of frame.users || []) {
        this.members.set(user.user_id, { meta: user.meta || {}, updated_at: user.updated_at || 0 });
      }
      this.version = frame.version === undefined ? null : frame.version;
      this._emit("presence", frame);
      this._emit("members", this.members);
      return;
    }
    if (frame.seq !== undefined && this.version !== null) {
      if (frame.seq <= this.version) return; // already in the view
      if (frame.seq !== this.version + 1) {
        // Something was missed: only a fresh sync makes the list exact again.
        this._resync();
        return;
      }
    }
    if (frame.seq !== undefined) this.version = frame.seq;
    if (type === "presence_leave") {
      this.members.delete(frame.user_id);
    } else {
      this.members.set(frame.user_id, { meta: frame.meta || {}, updated_at: frame.updated_at || 0 });
    }
    this._emit("presence", frame);
    this._emit("members", this.members);
  }
}

export class Realtime extends Emitter {
  constructor(url, options = {}) {
    super();
    this.url = socketUrl(url);
    this.options = {
      userId: options.userId,
      token: options.token,
      getToken: options.getToken,
      minDelay: options.minDelay ?? 250,
      maxDelay: options.maxDelay ?? 10000,
    };
    this._token = options.token;
    this.state = "closed";
    this.ws = null;
    this._open = false;
    this._wanted = false;
    this._subs = new Map();
    this._pending = new Map();
    this._ref = 0;
    this._attempt = 0;
    this._timer = null;
    this._stableTimer = null;
    this._connectWaiters = [];
    this._generation = 0;
  }

  /** Opens the connection; resolves once open. Rejects when the gateway refuses the upgrade
   * (the error has `.status`) or close() is called first; other failures are retried. */
  connect() {
    if (this._open) return Promise.resolve(this);
    const waiter = deferred();
    this._connectWaiters.push(waiter);
    if (!this._wanted) {
      this._wanted = true;
      this._attempt = 0;
      this._setState("connecting");
      this._dial();
    }
    return waiter.promise;
  }

  /** Closes for good: no reconnect after this (connect() opens again). */
  close() {
    this._wanted = false;
    clearTimeout(this._timer);
    clearTimeout(this._stableTimer);
    this._timer = null;
    const ws = this.ws;
    this.ws = null;
    this._generation += 1;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
      try {
        ws.close(1000, "client closed");
      } catch {
        // already closed
      }
    }
    this._lost();
    this._settleConnect(null, new RealtimeError("closed by the client", "closed"));
    this._setState("closed");
  }

  /** The subscription to channel (one per channel: a second call returns the first). */
  subscribe(channel, options = {}) {
    const existing = this._subs.get(channel);
    if (existing) return existing;
    const sub = new Subscription(this, channel, options);
    this._subs.set(channel, sub);
    if (this._open) sub._restore();
    return sub;
  }

  /** Every subscription, by channel. */
  get subscriptions() {
    return new Map(this._subs);
  }

  // -- the connection ---------------------------------------------------------------------

  _setState(state) {
    if (!STATES.has(state) || state === this.state) return;
    this.state = state;
    this._emit("state", state);
  }

  _address() {
    const url = new URL(this.url.href);
    if (this._token) url.searchParams.set("token", this._token);
    else if (this.options.userId !== undefined) url.searchParams.set("user_id", this.options.userId);
    return url;
  }

  async _freshToken() {
    if (!this.options.getToken) return;
    const token = await this.options.getToken();
    if (token) this._token = token;
  }

  async _dial() {
    const generation = ++this._generation;
    if (this._attempt > 0) {
      try {
        await this._freshToken();
      } catch (err) {
        this._emit("error", new RealtimeError(`getToken failed: ${err && err.message}`, "token_failed"));
      }
      if (generation !== this._generation || !this._wanted) return;
    }
    let ws;
    try {
      ws = new WebSocket(this._address().href);
    } catch (err) {
      this._fail(new RealtimeError(`cannot open ${this.url.href}: ${err.message}`, "connect_failed"), 0);
      return;
    }
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this._open = true;
      this._retriedToken = false;
      this._stableTimer = setTimeout(() => {
        this._attempt = 0;
      }, STABLE_MS);
      this._setState("connected");
      this._settleConnect(this, null);
      for (const sub of [...this._subs.values()]) sub._restore();
    };
    ws.onmessage = (event) => this._receive(event.data);
    ws.onerror = () => {
      // The close event that follows says what happened; a failed upgrade is looked into there.
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      clearTimeout(this._stableTimer);
      this._lost();
      if (!this._wanted) return;
      if (opened) {
        const why = `(${event.code}${event.reason ? ` ${event.reason}` : ""})`;
        const extra = { closeCode: event.code, reason: event.reason };
        if (event.code >= 4000 && event.code <= 4999 && !RECONNECT_APP_CODES.has(event.code)) {
          this._wanted = false;
          this._emit("error", new RealtimeError(`disconnected by the server ${why}`, "disconnected_by_server", extra));
          this._setState("closed");
          return;
        }
        this._emit("error", new RealtimeError(`connection lost ${why}`, "connection_lost", extra));
        this._retry(event.code);
      } else {
        this._refused();
      }
    };
  }

  /** The upgrade failed before opening. Browsers hide the HTTP status of a refused upgrade,
   * so the gateway answers the same checks on a plain request to the same URL. A POST: the
   * browser sends Origin with it even to its own origin (not with a GET), so an origin the
   * gateway refuses is seen as refused here too. */
  async _refused() {
    const generation = this._generation;
    let status = 0;
    let message = "connection failed";
    try {
      const url = this._address();
      url.protocol = url.protocol === "wss:" ? "https:" : "http:";
      const response = await fetch(url.href, { method: "POST", cache: "no-store" });
      status = response.status;
      try {
        const body = await response.json();
        if (body && body.error) message = body.error;
      } catch {
        // not JSON: an older gateway or something else on that port
      }
    } catch {
      // unreachable: retried after the backoff
    }
    if (generation !== this._generation || !this._wanted) return;
    if (REFUSED.has(status)) {
      if (status === 401 && this.options.getToken && !this._retriedToken) {
        // One more try with a fresh token before giving up.
        this._retriedToken = true;
        this._attempt += 1;
        this._dial();
        return;
      }
      this._retriedToken = false;
      const err = new RealtimeError(`upgrade refused (${status}): ${message}`, "refused", { status });
      this._wanted = false;
      this._emit("error", err);
      this._settleConnect(null, err);
      this._setState("closed");
      return;
    }
    this._retriedToken = false;
    const err = new RealtimeError(
      status && status !== 426 ? `upgrade refused (${status}): ${message}` : "connection failed",
      "connect_failed",
      { status },
    );
    this._emit("error", err);
    this._retry(0);
  }

  _retry(code) {
    this._setState("reconnecting");
    const step = this._attempt;
    this._attempt += 1;
    const { minDelay, maxDelay } = this.options;
    let cap = Math.min(maxDelay, minDelay * 2 ** Math.min(step, 30));
    if (code === 4029) cap = maxDelay; // told to slow down: wait the longest
    // Equal jitter: between half the cap and the cap, so a restarted gateway's clients do not
    // all come back at once, and none comes back sooner than half the backoff.
    const delay = cap / 2 + Math.random() * (cap / 2);
    this._timer = setTimeout(() => {
      this._timer = null;
      if (this._wanted) this._dial();
    }, delay);
  }

  _fail(err, code) {
    this._emit("error", err);
    this._retry(code);
  }

  _settleConnect(value, error) {
    const waiters = this._connectWaiters;
    this._connectWaiters = [];
    for (const waiter of waiters) {
      if (error) waiter.reject(error);
      else waiter.resolve(value);
    }
  }

  /** The socket is gone: what waited for an answer on it will never get one. */
  _lost() {
    this._open = false;
    const pending = this._pending;
    this._pending = new Map();
    for (const entry of pending.values()) {
      entry.reject(new RealtimeError("disconnected before the gateway answered", "disconnected"));
    }
  }

  // -- frames -----------------------------------------------------------------------------

  _sendFrame(frame) {
    const text = JSON.stringify(frame);
    this.ws.send(text);
    // The "frame" event feeds event logs on screen: a token never reaches one.
    this._emit("frame", frame.token === undefined ? frame : { ...frame, token: "[redacted]" }, "out");
  }

  /** Sends frame with a ref; resolves on its ack (or on the `answer` frame type), rejects on
   * the error frame carrying the ref, or when the connection goes first. */
  _request(frame, answer = "ack") {
    if (!this._open) {
      return Promise.reject(new RealtimeError("not connected", "disconnected"));
    }
    const ref = ++this._ref;
    const waiter = deferred();
    this._pending.set(ref, { ...waiter, answer });
    try {
      this._sendFrame({ ...frame, ref });
    } catch (err) {
      this._pending.delete(ref);
      waiter.reject(new RealtimeError(`send failed: ${err.message}`, "disconnected"));
    }
    return waiter.promise;
  }

  _receive(data) {
    if (typeof data !== "string") return; // the gateway sends text frames only
    // The seed sometimes packed several frames into one, newline-separated.
    const parts = data.includes("\n") ? data.split("\n") : [data];
    for (const part of parts) {
      if (!part.trim()) continue;
      let frame;
      try {
        frame = JSON.parse(part);
      } catch {
        this._emit("error", new RealtimeError("a frame that is not JSON came from the gateway", "invalid_frame"));
        continue;
      }
      this._emit("frame", frame, "in");
      this._dispatch(frame);
    }
  }

  _dispatch(frame) {
    const sub = frame.channel !== undefined ? this._subs.get(frame.channel) : undefined;
    switch (frame.type) {
      case "ack":
      case "history": {
        const entry = this._pending.get(frame.ref);
        if (entry && entry.answer === frame.type) {
          this._pending.delete(frame.ref);
          entry.resolve(frame);
        }
        return;
      }
      case "error":
        this._onError(frame, sub);
        return;
      case "broadcast":
        if (sub) sub._onBroadcast(frame);
        return;
      case "subscribed":
        if (sub) sub._onSubscribed(frame);
        return;
      case "presence_sync":
      case "presence_join":
      case "presence_update":
      case "presence_leave":
        if (sub) sub._onPresence(frame);
        return;
      default:
        return; // a frame type this client does not know: additive, ignored
    }
  }

  _onError(frame, sub) {
    const err = new RealtimeError(frame.message || frame.code, frame.code, { frame, channel: frame.channel });
    if (frame.ref !== undefined && frame.ref !== null) {
      const entry = this._pending.get(frame.ref);
      if (entry) {
        this._pending.delete(frame.ref);
        entry.reject(err);
        return;
      }
    }
    if (frame.code === "token_expired") {
      this._refresh();
    } else if (frame.code === "unsubscribed" && sub) {
      // The server API took this connection off the channel: it is not subscribed again.
      sub._drop();
      sub._emit("unsubscribed", err);
    }
    if (sub) sub._emit("error", err);
    this._emit("error", err);
  }

  async _refresh() {
    if (!this.options.getToken) return; // closed with 4001 later; reconnecting then
    try {
      await this._freshToken();
      if (this._open && this._token) await this._request({ type: "refresh", token: this._token });
    } catch (err) {
      this._emit("error", err instanceof RealtimeError ? err : new RealtimeError(`token refresh failed: ${err.message}`, "token_failed"));
    }
  }
}

export { RealtimeError };
export default Realtime;
