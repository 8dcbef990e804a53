/**
 * Tidings browser client (SPEC sections 6 and 7), served at /tidings/client.js.
 * Plain JS, no build step, no dependencies; exposes `globalThis.Tidings`.
 *
 * Register handlers with `Tidings.on(...)`, then call `Tidings.start()`.
 *
 * Transport: `?transport=ws` in the page URL runs the instance stream over the
 * Phoenix socket (`/socket/websocket`, topic `tidings:<instance_id>`, the join
 * being the handshake, commands as `command` pushes); otherwise (default,
 * `?transport=sse`) over SSE + POST. Same API, statuses, reconnect policy and
 * receipt store either way; navigation is a POST in both.
 */
(() => {
  "use strict";
  const G = globalThis;
  const BASE = "/tidings/";
  const STORE_KEY = "tidings:receipts";
  const MIN_DELAY = 250, MAX_DELAY = 5000, JITTER = 0.25;
  const STABLE_MS = 5000; // open this long: attempt counter resets
  const WATCHDOG_MS = 35000; // no event this long: stream is dead
  const EVENTS = ["broadcast", "add_sub_receipts", "drop_sub_receipts", "refresh_sub_receipts", "heartbeat", "message"];
  const WS_PATH = "/socket/websocket?vsn=2.0.0";
  const HEARTBEAT_MS = 25000; // WS: a heartbeat unanswered this long: socket is dead
  const JOIN_TIMEOUT_MS = 10000; // WS: socket open + join reply within this
  const COMMAND_TIMEOUT_MS = 10000; // WS: a command's reply within this (queued time included)

  let started = false;
  let instanceId = null;
  const store = new Map(); // JSON.stringify([channel, cid]) -> {channel, cid, token}
  let journal = null; // receipt changes made while a handshake is in flight
  let transport = "sse"; // "sse" | "ws", fixed at start
  let es = null; // the current EventSource
  let ws = null; // the current WebSocket
  let joinRef = null; // WS: the current join's ref, set once joined
  let lastRef = 0; // WS: message ref counter
  let hbRef = null; // WS: the heartbeat awaiting its reply
  const outbox = []; // WS: commands waiting for a joined socket
  const inflight = new Map(); // WS: ref -> command awaiting its reply
  let gen = 0; // bumped to cancel whatever connect is in flight
  let attempts = 0; // reconnects since the stream was last stable
  let status = "closed";
  let hidden = false; // closed by pagehide
  const timers = {}; // retry, watchdog, stable
  const handlers = new Map(); // cid -> Map(action | "*" -> Set<fn>)
  const statusFns = new Set();

  const keyOf = (r) => JSON.stringify([r.channel, r.cid]);
  const report = (e) => (G.reportError ? G.reportError(e) : console.error(e));
  const fail = (status, code, message) => Object.assign(new Error(message), { status, code });

  function save() {
    try {
      G.sessionStorage.setItem(STORE_KEY, JSON.stringify({ instance_id: instanceId, receipts: [...store.values()] }));
    } catch { /* storage off or full: the in-memory store still works */ }
  }

  /** Forgets `drops` ({channel, cid}), then stores `adds` ({channel, cid, token}). */
  function apply(adds, drops) {
    for (const k of drops || []) store.delete(keyOf(k));
    for (const r of adds || []) store.set(keyOf(r), { channel: r.channel, cid: r.cid, token: r.token });
    if (journal) journal.push([adds, drops]);
    save();
  }

  function setStatus(s) {
    if (s === status) return;
    status = s;
    G.document?.documentElement?.setAttribute("data-tidings-status", s);
    for (const fn of [...statusFns]) try { fn(s); } catch (e) { report(e); }
  }

  /** Runs `action` on component `cid`: its handlers, then its catch-alls. */
  function run(cid, action, params) {
    const byAction = handlers.get(cid);
    if (!byAction) return; // no such component on this page: skip silently
    for (const fn of [...(byAction.get(action) || []), ...(byAction.get("*") || [])])
      try { fn(params ?? {}, { cid, action }); } catch (e) { report(e); }
  }

  const runAll = (actions) => { for (const a of actions || []) run(a.cid, a.action, a.params); };

  /** POSTs JSON to a Tidings endpoint; rejects with an Error carrying status/code. */
  async function post(endpoint, body) {
    let res;
    try {
      res = await G.fetch(BASE + endpoint, { method: "POST", credentials: "same-origin",
        headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    } catch (e) {
      throw fail(0, "network_error", String(e?.message || e));
    }
    const json = await res.json().catch(() => null);
    const err = json?.error || {};
    if (!res.ok) throw fail(res.status, err.code || "http_error", err.message || `HTTP ${res.status}`);
    if (!json || typeof json !== "object") throw fail(res.status, "bad_response", "response is not JSON");
    return json;
  }

  const clear = (name) => G.clearTimeout(timers[name]);

  /** Closes the stream, cancels any connect in flight and every timer. */
  function closeStream() {
    gen++;
    journal = null;
    if (es) { es.close(); es = null; }
    if (ws) {
      try { ws.close(1000); } catch { /* already closing */ }
      ws = null;
    }
    joinRef = hbRef = null;
    // Sent but unanswered: whether they ran is unknown, so they fail; queued ones wait.
    for (const c of inflight.values()) c.done(fail(0, "network_error", "the connection closed before the reply"));
    clear("retry"); clear("watchdog"); clear("stable"); clear("heartbeat");
  }

  /** Schedules the next connect with exponential backoff and jitter. */
  function retry() {
    closeStream();
    setStatus("reconnecting");
    const base = Math.min(MAX_DELAY, MIN_DELAY * 2 ** attempts++);
    timers.retry = G.setTimeout(connect, base * (1 + JITTER * (2 * Math.random() - 1)));
  }

  /** Restarts the watchdog: any event proves the stream alive. */
  const kick = () => { clear("watchdog"); timers.watchdog = G.setTimeout(retry, WATCHDOG_MS); };

  /**
   * Replaces the store with the accepted receipts, then replays `changed`.
   * Returns false if it reloads the page instead (held receipts, none accepted).
   */
  function adopt(held, receipts, changed) {
    store.clear();
    apply(receipts);
    // Fail-safe: all our receipts were rejected; a reload renders afresh.
    if (held > 0 && store.size === 0) { G.location.reload(); return false; }
    // Replay receipt changes that commands/navigation made meanwhile.
    for (const [adds, drops] of changed) apply(adds, drops);
    return true;
  }

  /** The stream is up: status open, attempts reset once it stays up. */
  function opened() {
    setStatus("open");
    clear("stable");
    timers.stable = G.setTimeout(() => { attempts = 0; }, STABLE_MS);
  }

  /** Handshake with every stored token, replace the store, open the stream. */
  async function connect() {
    closeStream();
    if (transport === "ws") return connectWs();
    const my = gen;
    const held = store.size;
    journal = [];
    let res;
    try {
      res = await post("handshake", { instance_id: instanceId, receipts: [...store.values()].map((r) => r.token) });
    } catch {
      if (my === gen) retry(); // 401 included: retry, a reload may fix the session
      return;
    }
    if (my !== gen) return; // cancelled (pagehide) while in flight
    const changed = journal;
    journal = null;
    if (adopt(held, res.receipts, changed)) open(res.handshake_id);
  }

  function open(handshakeId) {
    const q = (k, v) => `${k}=${encodeURIComponent(v)}`;
    const src = new G.EventSource(`${BASE}events?${q("instance_id", instanceId)}&${q("handshake_id", handshakeId)}`);
    es = src;
    kick(); // also catches a stream that never opens
    src.onopen = () => {
      if (es !== src) return;
      kick();
      opened();
    };
    // Our reconnect replaces EventSource's own: it would reuse a spent handshake id.
    src.onerror = () => { if (es === src) retry(); };
    for (const name of EVENTS) src.addEventListener(name, (ev) => {
      if (es === src) { kick(); onEvent(name, ev.data); }
    });
  }

  function onEvent(name, data) {
    let d;
    try { d = JSON.parse(data); } catch { return; }
    onData(name, d);
  }

  function onData(name, d) {
    if (name === "broadcast") for (const cid of d?.cids || []) run(cid, d.action, d.params);
    else if (name === "drop_sub_receipts") apply(null, d);
    else if (name === "add_sub_receipts" || name === "refresh_sub_receipts") apply(d);
  }

  // --- WebSocket transport (SPEC section 7): Phoenix V2 frames
  // [join_ref, ref, topic, event, payload] on one socket per connect.

  const topic = () => `tidings:${instanceId}`;
  const nextRef = () => String(++lastRef);
  const send = (msg) => { if (ws?.readyState === 1) ws.send(JSON.stringify(msg)); };

  /** Opens a socket, joins the instance topic with every stored token. */
  function connectWs() {
    const loc = G.location;
    let sock;
    try {
      sock = new G.WebSocket(`${loc.protocol === "https:" ? "wss:" : "ws:"}//${loc.host}${WS_PATH}`);
    } catch {
      return retry();
    }
    ws = sock;
    // Also catches a socket that never opens or a join never answered.
    timers.watchdog = G.setTimeout(retry, JOIN_TIMEOUT_MS);
    let held = 0, ref = null;
    sock.onopen = () => {
      if (ws !== sock) return;
      held = store.size;
      journal = [];
      ref = nextRef();
      send([ref, ref, topic(), "phx_join", { receipts: [...store.values()].map((r) => r.token) }]);
      beat();
    };
    sock.onerror = sock.onclose = () => { if (ws === sock) retry(); };
    sock.onmessage = (ev) => {
      if (ws !== sock) return;
      let m;
      try { m = JSON.parse(ev.data); } catch { return; }
      if (!Array.isArray(m) || m.length !== 5) return;
      const [jr, mref, top, event, payload] = m;
      if (top === "phoenix") {
        if (event === "phx_reply" && mref === hbRef) hbRef = null;
      } else if (top !== topic()) {
        // not ours
      } else if (event === "phx_reply" && mref === ref && joinRef === null) {
        clear("watchdog");
        if (payload?.status !== "ok") return retry(); // refused: try afresh, like a failed handshake
        const changed = journal;
        journal = null;
        if (!adopt(held, payload.response?.receipts, changed)) return closeStream();
        joinRef = ref;
        opened();
        flush();
      } else if (jr !== joinRef || joinRef === null) {
        // a stale join's message
      } else if (event === "phx_reply") {
        inflight.get(mref)?.done(null, payload);
      } else if (event === "phx_close" || event === "phx_error") {
        retry();
      } else {
        onData(event, payload);
      }
    };
  }

  /** Heartbeats every interval; one still unanswered at the next means dead. */
  function beat() {
    timers.heartbeat = G.setTimeout(() => {
      if (hbRef) return retry();
      hbRef = nextRef();
      send([null, hbRef, "phoenix", "heartbeat", {}]);
      beat();
    }, HEARTBEAT_MS);
  }

  /** Sends the queued commands once joined. */
  function flush() {
    while (joinRef && outbox.length) {
      const c = outbox.shift();
      inflight.set(c.ref = nextRef(), c);
      send([joinRef, c.ref, topic(), "command", c.payload]);
    }
  }

  /** A `command` push; resolves with the reply's ok response (the POST body). */
  function wsCommand(payload) {
    return new Promise((resolve, reject) => {
      const c = { payload, ref: null };
      c.done = (err, reply) => {
        G.clearTimeout(c.timer);
        const i = outbox.indexOf(c);
        if (i >= 0) outbox.splice(i, 1);
        inflight.delete(c.ref);
        if (err) return reject(err);
        const r = reply?.response;
        if (reply?.status === "ok" && r && typeof r === "object") return resolve(r);
        // No HTTP status over the socket: 0, as for a network error.
        const [code, message] = r?.error ? [r.error.code, r.error.message] : String(r?.reason || "error").split(/: (.*)/s);
        reject(fail(0, code || "error", message || code || "command failed"));
      };
      c.timer = G.setTimeout(() => c.done(fail(0, "timeout", `no reply within ${COMMAND_TIMEOUT_MS} ms`)), COMMAND_TIMEOUT_MS);
      outbox.push(c);
      flush();
    });
  }

  const need = () => { if (!started) throw new Error("Tidings: call Tidings.start() first"); };

  // #1036: no stream kept open in the bfcache; reopen on restore.
  G.addEventListener?.("pagehide", () => {
    if (started) { closeStream(); hidden = true; setStatus("closed"); }
  });
  G.addEventListener?.("pageshow", () => {
    if (hidden) { hidden = false; attempts = 0; setStatus("connecting"); connect(); }
  });

  G.Tidings = {
    /**
     * Loads receipts (sessionStorage's if they are this instance's, else the
     * boot ones), runs the boot self-echoes, connects. Idempotent.
     * @param {object} [boot] default: the JSON in `#tidings-boot`
     */
    start(boot) {
      if (started) return;
      boot ??= JSON.parse(G.document.getElementById("tidings-boot").textContent);
      started = true;
      instanceId = boot.instance_id;
      let mode = null;
      try { mode = new URLSearchParams(G.location?.search || "").get("transport"); } catch { /* none */ }
      transport = mode === "ws" && G.WebSocket ? "ws" : "sse";
      let saved = null;
      try { saved = JSON.parse(G.sessionStorage.getItem(STORE_KEY)); } catch { /* none */ }
      apply(saved?.instance_id === instanceId ? saved.receipts : boot.receipts);
      runAll(boot.self_echoes);
      setStatus("connecting");
      connect();
    },

    /**
     * Registers `fn(params, {cid, action})` for `action` on component `cid`
     * (`action` "*" catches every action on that cid).
     * @returns {() => void} removes the handler
     */
    on(cid, action, fn) {
      if (!handlers.has(cid)) handlers.set(cid, new Map());
      const byAction = handlers.get(cid);
      if (!byAction.has(action)) byAction.set(action, new Set());
      const set = byAction.get(action).add(fn);
      return () => set.delete(fn);
    },

    /** Removes every handler of component `cid` (e.g. after navigation). */
    off(cid) { handlers.delete(cid); },

    /**
     * Calls `fn(status)` on every connection status change.
     * @returns {() => void} removes the listener
     */
    onStatus(fn) { statusFns.add(fn); return () => statusFns.delete(fn); },

    /** @type {"connecting"|"open"|"reconnecting"|"closed"} */
    get connectionStatus() { return status; },

    /** @type {"sse"|"ws"} The transport in use (from `?transport=`, set at start). */
    get transport() { return transport; },

    /** This tab's instance id (null before start). */
    get instanceId() { return instanceId; },

    /** Debug: copies of the stored receipts `{channel, cid, token}`. */
    receipts() { return [...store.values()].map((r) => ({ ...r })); },

    /**
     * Runs command `name` of component `target`; applies the receipt changes,
     * runs the command's own action, then each self-echo, then resolves.
     * @returns {Promise<object>} the response; rejects with an Error carrying
     *   `status` (the HTTP status; 0 over WS or on a network error), `code`,
     *   `message`. Over WS a command waits for the join, then for its reply,
     *   10 s in all (code `timeout`); one sent when the socket drops fails
     *   (`network_error`).
     */
    async command(target, name, params = {}) {
      need();
      const res = transport === "ws"
        ? await wsCommand({ target, name, params })
        : await post("command", { instance_id: instanceId, target, name, params });
      apply(res.receipts?.adds, res.receipts?.drops);
      if (res.action) run(res.action.cid, res.action.action, res.action.params);
      runAll(res.self_echoes);
      return res;
    },

    /**
     * Renders page `path` server-side, claiming the stored bindings, and applies
     * the receipt changes; then `await render(html)` if given (insert the HTML,
     * register handlers), then the self-echoes run. The stream is kept.
     * @returns {Promise<{html: string, self_echoes: object[]}>}
     */
    async navigate(path, render) {
      need();
      const claimed = [...store.values()].map(({ channel, cid }) => ({ channel, cid }));
      const res = await post("navigate", { instance_id: instanceId, path, claimed });
      apply(res.receipts?.adds, res.receipts?.drops);
      if (render) await render(res.html);
      runAll(res.self_echoes);
      return { html: res.html, self_echoes: res.self_echoes || [] };
    },
  };
})();
