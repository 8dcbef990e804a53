// Tests for tidings.js in WebSocket mode (`?transport=ws`): loads it in a vm
// context with a fake WebSocket and a fake clock. Run: node --test transport-sse/assets/
import { test } from "node:test";
import assert from "node:assert/strict";
import vm from "node:vm";
import { readFileSync } from "node:fs";

const SRC = readFileSync(new URL("./tidings.js", import.meta.url), "utf8");
const ID = "0b7e4f3a-5c1d-4e2f-9a6b-1c2d3e4f5a6b";
const TOPIC = `tidings:${ID}`;
const ROOM = { t: "room", v: [42] };
const LOBBY = { t: "lobby", v: [] };
const rc = (channel, cid, token) => ({ channel, cid, token });
// Values from the vm realm have foreign prototypes: compare them as JSON.
const plain = (v) => JSON.parse(JSON.stringify(v));

/** A fake browser page at `http://chat.test/rooms/1<search>`. */
function browser({ boot, stored, search = "?transport=ws", random = 0.5, fetchServer } = {}) {
  boot ??= { instance_id: ID, receipts: [rc(ROOM, "page", "t1")], self_echoes: [] };

  // Fake clock.
  let now = 0, seq = 0;
  const timers = new Map();
  const flush = async () => { for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r)); };
  async function advance(ms) {
    const end = now + ms;
    for (;;) {
      await flush();
      let next = null;
      for (const [id, t] of timers) if (t.at <= end && (!next || t.at < next[1].at)) next = [id, t];
      if (!next) break;
      timers.delete(next[0]);
      now = next[1].at;
      next[1].fn();
    }
    now = end;
    await flush();
  }

  const sockets = [];
  class WebSocket {
    constructor(url) { this.url = url; this.readyState = 0; this.sent = []; this.closedWith = null; this.at = now; sockets.push(this); }
    send(data) { assert.equal(this.readyState, 1, "send on an open socket only"); this.sent.push(JSON.parse(data)); }
    close(code) { this.readyState = 3; this.closedWith = code; }
    // test helpers
    open() { this.readyState = 1; this.onopen?.({}); }
    recv(msg) { this.onmessage?.({ data: JSON.stringify(msg) }); }
    drop() { this.readyState = 3; this.onclose?.({ code: 1006 }); }
    error() { this.onerror?.({}); this.readyState = 3; this.onclose?.({ code: 1006 }); }
    get closed() { return this.readyState === 3; }
    get join() { return this.sent.find((m) => m[3] === "phx_join"); }
    get commands() { return this.sent.filter((m) => m[3] === "command"); }
    get heartbeats() { return this.sent.filter((m) => m[2] === "phoenix"); }
    /** Answers message `m` with a phx_reply. */
    reply(m, status, response) { this.recv([m[0], m[1], m[2], "phx_reply", { status, response }]); }
    /** Opens and accepts the join, re-signing each token (t -> t'). */
    accept(receipts) {
      if (this.readyState === 0) this.open();
      receipts ??= this.join[4].receipts.map((t) => rc(ROOM, "page", t + "'"));
      this.reply(this.join, "ok", { receipts });
    }
    /** A channel push on the instance topic under the current join. */
    push(event, payload, joinRef = this.join[0]) { this.recv([joinRef, null, TOPIC, event, payload]); }
  }

  const posts = [];
  const fetch = async (url, init) => {
    const body = JSON.parse(init.body);
    const ep = url.replace("/tidings/", "");
    posts.push({ ep, body, at: now });
    const r = await (fetchServer ?? (() => ({ status: 500, json: {} })))(ep, body);
    return { ok: r.status >= 200 && r.status < 300, status: r.status, json: async () => r.json };
  };
  const streams = [];
  class EventSource {
    constructor(url) { this.url = url; streams.push(this); }
    addEventListener() {}
    close() {}
  }

  const storage = new Map();
  if (stored) storage.set("tidings:receipts", JSON.stringify(stored));
  const attrs = {};
  const winListeners = {};
  const errors = [];
  const ctx = {
    setTimeout: (fn, ms) => { timers.set(++seq, { at: now + ms, fn }); return seq; },
    clearTimeout: (id) => timers.delete(id),
    fetch,
    EventSource,
    WebSocket,
    URLSearchParams,
    sessionStorage: { getItem: (k) => storage.get(k) ?? null, setItem: (k, v) => storage.set(k, String(v)) },
    document: {
      documentElement: { setAttribute: (k, v) => { attrs[k] = v; } },
      getElementById: (id) => (id === "tidings-boot" ? { textContent: JSON.stringify(boot) } : null),
    },
    location: { protocol: "http:", host: "chat.test", search, reloads: 0, reload() { this.reloads++; } },
    addEventListener: (n, f) => (winListeners[n] ??= []).push(f),
    reportError: (e) => errors.push(e),
    console,
  };
  vm.createContext(ctx);
  vm.runInContext(`Math.random = () => ${random}`, ctx);
  vm.runInContext(SRC, ctx);
  const T = ctx.Tidings;
  const statuses = [];
  T.onStatus((s) => statuses.push(s));
  return {
    T, ctx, sockets, posts, streams, storage, attrs, errors, statuses, advance, flush,
    get now() { return now; },
    get ws() { return sockets.at(-1); },
    fire: (n) => { for (const f of winListeners[n] || []) f({}); },
    stored: () => JSON.parse(storage.get("tidings:receipts")),
  };
}

/** Starts `b` and gets its first socket joined. */
async function started(b, receipts) {
  b.T.start();
  await b.flush();
  b.ws.accept(receipts);
  await b.flush();
  return b.ws;
}

test("transport: ?transport=ws picks the socket; default and ?transport=sse keep SSE", async () => {
  for (const [search, mode] of [["", "sse"], ["?transport=sse", "sse"], ["?a=1&transport=ws", "ws"], ["?transport=WS", "sse"]]) {
    const b = browser({ search, fetchServer: (ep, body) => ({ status: 200, json: { handshake_id: "h", receipts: body.receipts.map((t) => rc(ROOM, "page", t)) } }) });
    b.T.start();
    await b.flush();
    assert.equal(b.T.transport, mode, search);
    assert.equal(b.sockets.length, mode === "ws" ? 1 : 0, search);
    assert.equal(b.streams.length, mode === "sse" ? 1 : 0, search);
    assert.equal(b.posts.length, mode === "sse" ? 1 : 0, search); // no POST handshake over WS
  }
});

test("ws start: joins tidings:<id> with the stored receipts; the join reply replaces the store; open", async () => {
  const b = browser({ stored: { instance_id: ID, receipts: [rc(ROOM, "page", "s1"), rc(LOBBY, "c1", "s2")] } });
  b.T.start();
  assert.equal(b.T.connectionStatus, "connecting");
  await b.flush();
  assert.equal(b.ws.url, "ws://chat.test/socket/websocket?vsn=2.0.0");
  assert.equal(b.ws.sent.length, 0);
  b.ws.open();
  const join = b.ws.join;
  assert.deepEqual(join, [join[0], join[0], TOPIC, "phx_join", { receipts: ["s1", "s2"] }]);
  assert.equal(typeof join[0], "string");
  assert.equal(b.T.connectionStatus, "connecting"); // open only once joined
  b.ws.reply(join, "ok", { receipts: [rc(ROOM, "page", "s1'")] }); // c1 rejected: purged
  assert.equal(b.T.connectionStatus, "open");
  assert.equal(b.attrs["data-tidings-status"], "open");
  assert.deepEqual(plain(b.T.receipts()), [rc(ROOM, "page", "s1'")]);
  assert.deepEqual(b.stored(), { instance_id: ID, receipts: [rc(ROOM, "page", "s1'")] });
  assert.deepEqual(b.statuses, ["connecting", "open"]);
  assert.equal(b.posts.length, 0);
  assert.equal(b.ctx.location.reloads, 0);
});

test("ws reload fail-safe: held receipts but the join accepted none => reload, socket closed", async () => {
  const b = browser();
  await started(b, []);
  assert.equal(b.ctx.location.reloads, 1);
  assert.equal(b.ws.closed, true);
  const nothing = browser({ boot: { instance_id: ID, receipts: [], self_echoes: [] } });
  await started(nothing, []);
  assert.equal(nothing.ctx.location.reloads, 0);
  assert.equal(nothing.T.connectionStatus, "open");
});

test("ws pushes: broadcast runs actions per cid; receipt pushes update the store; stale and foreign frames ignored", async () => {
  const b = browser();
  const seen = [];
  b.T.on("page", "grow", (p, i) => seen.push(["page", p.by, i.action]));
  b.T.on("c1", "*", (p, i) => seen.push(["c1*", p.by, i.action]));
  b.T.on("c3", "grow", () => { throw new Error("boom"); });
  const ws = await started(b);
  ws.push("broadcast", { action: "grow", params: { by: 2 }, cids: ["page", "c2", "c1", "c3"] });
  assert.deepEqual(seen, [["page", 2, "grow"], ["c1*", 2, "grow"]]);
  assert.equal(b.errors.length, 1);

  ws.push("broadcast", { action: "grow", params: { by: 9 }, cids: ["page"] }, "stale-join");
  ws.recv([null, null, "realtime:lobby", "broadcast", { action: "grow", params: { by: 8 }, cids: ["page"] }]);
  ws.recv("not an array");
  assert.equal(seen.length, 2);

  ws.push("add_sub_receipts", [rc(LOBBY, "c1", "x")]);
  ws.push("refresh_sub_receipts", [rc(ROOM, "page", "t1-new"), rc(LOBBY, "c1", "x2")]);
  assert.deepEqual(plain(b.T.receipts()), [rc(ROOM, "page", "t1-new"), rc(LOBBY, "c1", "x2")]);
  ws.push("drop_sub_receipts", [{ channel: ROOM, cid: "page" }]);
  assert.deepEqual(plain(b.T.receipts()), [rc(LOBBY, "c1", "x2")]);
  assert.deepEqual(b.stored().receipts, [rc(LOBBY, "c1", "x2")]);
});

test("ws command: a `command` push under the join; the ok reply is the POST body, applied in order", async () => {
  const b = browser();
  const order = [];
  b.T.on("c1", "*", (p, i) => order.push(`c1:${i.action}`));
  b.T.on("page", "echo", () => order.push("page:echo"));
  const ws = await started(b);
  const p = b.T.command("c1", "inc", { by: 1 }).then((r) => { order.push("resolved"); return r; });
  const [cmd] = ws.commands;
  assert.deepEqual(cmd, [ws.join[0], cmd[1], TOPIC, "command", { target: "c1", name: "inc", params: { by: 1 } }]);
  assert.notEqual(cmd[1], ws.join[1]);
  ws.reply(cmd, "ok", {
    action: { action: "mine", params: { a: 1 }, cid: "c1" },
    self_echoes: [{ action: "echo", params: {}, cid: "page" }, { action: "echo", params: {}, cid: "c1" }],
    receipts: { adds: [rc(LOBBY, "c1", "L")], drops: [{ channel: ROOM, cid: "page" }] },
  });
  const res = await p;
  assert.deepEqual(order, ["c1:mine", "page:echo", "c1:echo", "resolved"]);
  assert.equal(res.action.action, "mine");
  assert.deepEqual(plain(b.T.receipts()), [rc(LOBBY, "c1", "L")]);
  assert.equal(b.posts.length, 0); // no POST /tidings/command over WS
});

test("ws command errors: error reply rejects with code and message; no reply in 10 s => timeout", async () => {
  const b = browser();
  const ws = await started(b);
  const bad = b.T.command("page", "bad", {});
  ws.reply(ws.commands[0], "error", { error: { code: "rejected", message: "no: really" }, reason: "rejected: no: really" });
  await assert.rejects(bad, (e) => e.code === "rejected" && e.message === "no: really" && e.status === 0);
  const malformed = b.T.command("page", "x", {});
  ws.reply(ws.commands[1], "error", { reason: "bad_request: a command is {target, name, params}" });
  await assert.rejects(malformed, (e) => e.code === "bad_request" && e.message === "a command is {target, name, params}");

  const slow = b.T.command("page", "slow", {});
  let err = null;
  slow.catch((e) => { err = e; });
  await b.advance(9999);
  assert.equal(err, null);
  await b.advance(1);
  assert.equal(err?.code, "timeout");
  ws.reply(ws.commands[2], "ok", { action: null, self_echoes: [], receipts: { adds: [], drops: [] } }); // late: ignored
  assert.equal(b.T.connectionStatus, "open"); // a slow command does not kill the socket
});

test("ws command before the join is queued and sent once joined, in order", async () => {
  const b = browser();
  b.T.start();
  await b.flush();
  const seen = [];
  const a = b.T.command("page", "one", {}).then(() => seen.push("one"));
  const c = b.T.command("page", "two", {}).then(() => seen.push("two"));
  b.ws.open();
  assert.deepEqual(b.ws.commands, []); // join first
  b.ws.accept();
  assert.deepEqual(b.ws.commands.map((m) => m[4].name), ["one", "two"]);
  for (const m of b.ws.commands) b.ws.reply(m, "ok", { action: null, self_echoes: [], receipts: { adds: [], drops: [] } });
  await Promise.all([a, c]);
  assert.deepEqual(seen, ["one", "two"]);
});

test("ws heartbeat: every 25 s on topic phoenix; a reply missing at the next beat => reconnect", async () => {
  const b = browser();
  const ws = await started(b);
  await b.advance(24999);
  assert.deepEqual(ws.heartbeats, []);
  await b.advance(1);
  const [hb] = ws.heartbeats;
  assert.deepEqual(hb, [null, hb[1], "phoenix", "heartbeat", {}]);
  ws.recv([null, hb[1], "phoenix", "phx_reply", { status: "ok", response: {} }]);
  await b.advance(25000);
  assert.equal(ws.heartbeats.length, 2);
  assert.equal(ws.closed, false);
  // No reply to the second: at the third beat the socket is dead.
  await b.advance(24999);
  assert.equal(ws.closed, false);
  await b.advance(1);
  assert.equal(ws.closed, true);
  assert.equal(ws.heartbeats.length, 2);
  assert.equal(b.T.connectionStatus, "reconnecting");
  await b.advance(250);
  assert.equal(b.sockets.length, 2);
  b.ws.accept();
  assert.deepEqual(b.ws.join[4].receipts, ["t1'"]); // the re-signed token
  assert.equal(b.T.connectionStatus, "open");
});

test("ws: phx_close, phx_error, socket error and close each reconnect with backoff; in-flight commands fail", async () => {
  const b = browser();
  let ws = await started(b);
  const cmd = b.T.command("page", "say", {});
  ws.push("phx_close", {});
  assert.equal(ws.closed, true);
  assert.equal(ws.closedWith, 1000);
  assert.equal(b.T.connectionStatus, "reconnecting");
  await assert.rejects(cmd, (e) => e.code === "network_error");
  ws.push("broadcast", { action: "a", params: {}, cids: ["page"] }); // stale socket: ignored

  // Each failure within 5 s of the last doubles the delay: 250, 500, 1000, 2000.
  const kills = [(s) => s.push("phx_error", {}), (s) => s.error(), (s) => s.drop(), (s) => s.drop()];
  const delays = [];
  let t0 = b.now;
  for (const kill of [null, ...kills]) {
    if (kill) { kill(ws); t0 = b.now; }
    const n = b.sockets.length;
    while (b.sockets.length === n) await b.advance(10);
    delays.push(Math.round((b.ws.at - t0) / 10) * 10);
    ws = b.ws;
    ws.accept();
    await b.advance(1000);
  }
  assert.deepEqual(delays, [250, 500, 1000, 2000, 4000]);
  assert.deepEqual(b.statuses.slice(0, 4), ["connecting", "open", "reconnecting", "open"]);
  // Open 5 s: stable, back to 250.
  await b.advance(4000);
  ws.drop();
  t0 = b.now;
  await b.advance(250);
  assert.equal(b.ws.at - t0, 250);
});

test("ws: a refused join or no join reply in 10 s retries like a failed handshake", async () => {
  const b = browser();
  b.T.start();
  await b.flush();
  b.ws.open();
  b.ws.reply(b.ws.join, "error", { reason: "Unauthorized: session mismatch" });
  assert.equal(b.T.connectionStatus, "reconnecting");
  assert.equal(b.sockets[0].closed, true);
  await b.advance(250);
  assert.equal(b.sockets.length, 2);
  await b.advance(9999); // never opens
  assert.equal(b.sockets.length, 2);
  await b.advance(1);
  assert.equal(b.sockets[1].closed, true);
  await b.advance(1000);
  assert.equal(b.sockets.length, 3);
  assert.equal(b.ctx.location.reloads, 0);
});

test("ws: pagehide closes the socket (closed, no reconnect); pageshow rejoins", async () => {
  const b = browser();
  const ws = await started(b);
  b.fire("pagehide");
  assert.equal(ws.closed, true);
  assert.equal(b.T.connectionStatus, "closed");
  await b.advance(100000);
  assert.equal(b.sockets.length, 1);
  b.fire("pageshow");
  assert.equal(b.T.connectionStatus, "connecting");
  await b.flush();
  assert.equal(b.sockets.length, 2);
  b.ws.accept();
  assert.deepEqual(b.statuses, ["connecting", "open", "closed", "connecting", "open"]);
});

test("ws: receipt changes made by navigation during the join survive its replacement", async () => {
  const b = browser({
    fetchServer: () => ({ status: 200, json: { html: "", self_echoes: [], receipts: { adds: [rc(LOBBY, "c1", "new")], drops: [] } } }),
  });
  b.T.start();
  await b.flush();
  b.ws.open();
  await b.T.navigate("/lobby");
  assert.deepEqual(b.posts.map((p) => p.ep), ["navigate"]);
  b.ws.accept([rc(ROOM, "page", "t1'")]);
  assert.deepEqual(plain(b.T.receipts()), [rc(ROOM, "page", "t1'"), rc(LOBBY, "c1", "new")]);
});
