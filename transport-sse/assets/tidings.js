/**
 * Tidings browser client (SPEC section 6), served at /tidings/client.js. Plain JS,
 * no build step, no dependencies; exposes `globalThis.Tidings`.
 *
 * Register handlers with `Tidings.on(...)`, then call `Tidings.start()`.
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

  let started = false;
  let instanceId = null;
  const store = new Map(); // JSON.stringify([channel, cid]) -> {channel, cid, token}
  let journal = null; // receipt changes made while a handshake is in flight
  let es = null; // the current EventSource
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
    clear("retry"); clear("watchdog"); clear("stable");
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

  /** Handshake with every stored token, replace the store, open the stream. */
  async function connect() {
    closeStream();
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
    store.clear();
    apply(res.receipts);
    // Fail-safe: all our receipts were rejected; a reload renders afresh.
    if (held > 0 && store.size === 0) return G.location.reload();
    // Replay receipt changes that commands/navigation made meanwhile.
    for (const [adds, drops] of changed) apply(adds, drops);
    open(res.handshake_id);
  }

  function open(handshakeId) {
    const q = (k, v) => `${k}=${encodeURIComponent(v)}`;
    const src = new G.EventSource(`${BASE}events?${q("instance_id", instanceId)}&${q("handshake_id", handshakeId)}`);
    es = src;
    kick(); // also catches a stream that never opens
    src.onopen = () => {
      if (es !== src) return;
      kick();
      setStatus("open");
      clear("stable");
      timers.stable = G.setTimeout(() => { attempts = 0; }, STABLE_MS);
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
    if (name === "broadcast") for (const cid of d?.cids || []) run(cid, d.action, d.params);
    else if (name === "drop_sub_receipts") apply(null, d);
    else if (name === "add_sub_receipts" || name === "refresh_sub_receipts") apply(d);
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

    /** This tab's instance id (null before start). */
    get instanceId() { return instanceId; },

    /** Debug: copies of the stored receipts `{channel, cid, token}`. */
    receipts() { return [...store.values()].map((r) => ({ ...r })); },

    /**
     * Runs command `name` of component `target`; applies the receipt changes,
     * runs the command's own action, then each self-echo, then resolves.
     * @returns {Promise<object>} the response; rejects with an Error carrying
     *   `status`, `code`, `message`
     */
    async command(target, name, params = {}) {
      need();
      const res = await post("command", { instance_id: instanceId, target, name, params });
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
