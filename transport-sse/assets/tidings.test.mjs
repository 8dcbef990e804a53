// Tests for tidings.js: loads it in a vm context with fake browser globals and
// a fake clock. Run: node --test transport-sse/assets/
import { test } from "node:test";
import assert from "node:assert/strict";
import vm from "node:vm";
import { readFileSync } from "node:fs";

const SRC = readFileSync(new URL("./tidings.js", import.meta.url), "utf8");
const ID = "0b7e4f3a-5c1d-4e2f-9a6b-1c2d3e4f5a6b";
const ROOM = { t: "room", v: [42] };
const LOBBY = { t: "lobby", v: [] };
const rc = (channel, cid, token) => ({ channel, cid, token });
// Values from the vm realm have foreign prototypes: compare them as JSON.
const plain = (v) => JSON.parse(JSON.stringify(v));

/**
 * A fake browser. `server(endpoint, body)` answers POSTs with
 * `{status, json}` (or a promise of it), or throws for a network error.
 */
function browser({ boot, stored, server, random = 0.5 } = {}) {
  boot ??= { instance_id: ID, receipts: [rc(ROOM, "page", "t1")], self_echoes: [] };
  let hid = 0;
  server ??= (ep, body) =>
    ep === "handshake"
      ? { status: 200, json: { handshake_id: `h${++hid}`, receipts: body.receipts.map((t) => rc(ROOM, "page", t + "'")) } }
      : { status: 404, json: { error: { code: "not_found", message: "nope" } } };

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

  const posts = [];
  const fetch = async (url, init) => {
    assert.equal(init.method, "POST");
    assert.equal(init.credentials, "same-origin");
    const body = JSON.parse(init.body);
    const ep = url.replace("/tidings/", "");
    posts.push({ ep, body, at: now });
    const r = await server(ep, body);
    return { ok: r.status >= 200 && r.status < 300, status: r.status, json: async () => r.json };
  };

  const streams = [];
  class EventSource {
    constructor(url) { this.url = url; this.closed = false; this.ls = {}; streams.push(this); }
    addEventListener(n, f) { (this.ls[n] ??= []).push(f); }
    close() { this.closed = true; }
    // test helpers
    open() { this.onopen?.({}); }
    error() { this.onerror?.({}); }
    emit(name, data) { for (const f of this.ls[name] || []) f({ data: JSON.stringify(data) }); }
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
    sessionStorage: { getItem: (k) => storage.get(k) ?? null, setItem: (k, v) => storage.set(k, String(v)) },
    document: {
      documentElement: { setAttribute: (k, v) => { attrs[k] = v; } },
      getElementById: (id) => (id === "tidings-boot" ? { textContent: JSON.stringify(boot) } : null),
    },
    location: { reloads: 0, reload() { this.reloads++; } },
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
    T, ctx, posts, streams, storage, attrs, errors, statuses, advance, flush,
    get now() { return now; },
    get es() { return streams.at(-1); },
    fire: (n) => { for (const f of winListeners[n] || []) f({}); },
    handshakes: () => posts.filter((p) => p.ep === "handshake"),
    stored: () => JSON.parse(storage.get("tidings:receipts")),
  };
}

test("start: handshake with the boot receipts, then EventSource; status and attribute", async () => {
  const b = browser();
  assert.equal(b.T.connectionStatus, "closed");
  b.T.start();
  assert.equal(b.T.connectionStatus, "connecting");
  assert.equal(b.attrs["data-tidings-status"], "connecting");
  await b.flush();
  assert.deepEqual(b.posts, [{ ep: "handshake", body: { instance_id: ID, receipts: ["t1"] }, at: 0 }]);
  assert.equal(b.streams.length, 1);
  assert.equal(b.es.url, `/tidings/events?instance_id=${ID}&handshake_id=h1`);
  assert.equal(b.T.connectionStatus, "connecting");
  b.es.open();
  assert.equal(b.T.connectionStatus, "open");
  assert.equal(b.attrs["data-tidings-status"], "open");
  assert.deepEqual(b.statuses, ["connecting", "open"]);
  b.T.start(); // idempotent
  await b.flush();
  assert.equal(b.posts.length, 1);
});

test("handshake replaces the store (purging rejected receipts) and persists it", async () => {
  const boot = { instance_id: ID, receipts: [rc(ROOM, "page", "a"), rc(LOBBY, "c1", "b")], self_echoes: [] };
  const b = browser({
    boot,
    server: () => ({ status: 200, json: { handshake_id: "h", receipts: [rc(ROOM, "page", "a2")] } }),
  });
  b.T.start();
  await b.flush();
  assert.deepEqual(b.posts[0].body.receipts, ["a", "b"]);
  assert.deepEqual(plain(b.T.receipts()), [rc(ROOM, "page", "a2")]);
  assert.deepEqual(b.stored(), { instance_id: ID, receipts: [rc(ROOM, "page", "a2")] });
  assert.equal(b.ctx.location.reloads, 0);
  assert.equal(b.streams.length, 1);
});

test("reload fail-safe: held receipts but none accepted => reload, no stream", async () => {
  const b = browser({ server: () => ({ status: 200, json: { handshake_id: "h", receipts: [] } }) });
  b.T.start();
  await b.flush();
  assert.equal(b.ctx.location.reloads, 1);
  assert.equal(b.streams.length, 0);
});

test("no reload when nothing was held", async () => {
  const b = browser({
    boot: { instance_id: ID, receipts: [], self_echoes: [] },
    server: () => ({ status: 200, json: { handshake_id: "h", receipts: [] } }),
  });
  b.T.start();
  await b.flush();
  assert.equal(b.ctx.location.reloads, 0);
  assert.equal(b.streams.length, 1);
});

test("stored receipts are kept for the same instance, replaced for another", async () => {
  const same = browser({ stored: { instance_id: ID, receipts: [rc(LOBBY, "c9", "s1")] } });
  same.T.start();
  await same.flush();
  assert.deepEqual(same.posts[0].body.receipts, ["s1"]);
  const other = browser({ stored: { instance_id: "11111111-1111-4111-8111-111111111111", receipts: [rc(LOBBY, "c9", "s1")] } });
  other.T.start();
  await other.flush();
  assert.deepEqual(other.posts[0].body.receipts, ["t1"]);
  assert.equal(other.stored().instance_id, ID);
});

test("boot self-echoes run at start, on handlers registered before it", async () => {
  const boot = { instance_id: ID, receipts: [], self_echoes: [{ action: "hi", params: { n: 1 }, cid: "page" }] };
  const b = browser({ boot });
  const seen = [];
  b.T.on("page", "hi", (p, info) => seen.push([plain(p), plain(info)]));
  b.T.start();
  assert.deepEqual(seen, [[{ n: 1 }, { cid: "page", action: "hi" }]]);
});

test("broadcast runs the action on each listed cid with a handler; receipt events", async () => {
  const b = browser();
  const seen = [];
  b.T.on("page", "grow", (p, i) => seen.push(["page", p.by, i.action]));
  b.T.on("c1", "*", (p, i) => seen.push(["c1*", p.by, i.action]));
  b.T.on("c1", "other", () => seen.push(["wrong"]));
  b.T.on("c3", "grow", () => { throw new Error("boom"); });
  b.T.start();
  await b.flush();
  b.es.open();
  b.es.emit("broadcast", { action: "grow", params: { by: 2 }, cids: ["page", "c2", "c1", "c3"] });
  assert.deepEqual(seen, [["page", 2, "grow"], ["c1*", 2, "grow"]]);
  assert.equal(b.errors.length, 1); // a throwing handler is reported, not fatal

  b.es.emit("add_sub_receipts", [rc(LOBBY, "c1", "x")]);
  b.es.emit("refresh_sub_receipts", [rc(ROOM, "page", "t1-new"), rc(LOBBY, "c1", "x2")]);
  assert.deepEqual(plain(b.T.receipts()), [rc(ROOM, "page", "t1-new"), rc(LOBBY, "c1", "x2")]);
  b.es.emit("drop_sub_receipts", [{ channel: ROOM, cid: "page" }]);
  assert.deepEqual(plain(b.T.receipts()), [rc(LOBBY, "c1", "x2")]);
  assert.deepEqual(b.stored().receipts, [rc(LOBBY, "c1", "x2")]);
});

test("command: receipts applied, own action before self-echoes, then resolves; errors reject", async () => {
  const b = browser({
    server: (ep, body) => {
      if (ep === "handshake") return { status: 200, json: { handshake_id: "h", receipts: [rc(ROOM, "page", "t1")] } };
      if (body.name === "bad") return { status: 422, json: { error: { code: "rejected", message: "no" } } };
      assert.deepEqual(body, { instance_id: ID, target: "c1", name: "inc", params: { by: 1 } });
      return {
        status: 200,
        json: {
          action: { action: "mine", params: { a: 1 }, cid: "c1" },
          self_echoes: [{ action: "echo", params: {}, cid: "page" }, { action: "echo", params: {}, cid: "c1" }],
          receipts: { adds: [rc(LOBBY, "c1", "L")], drops: [{ channel: ROOM, cid: "page" }] },
        },
      };
    },
  });
  const order = [];
  b.T.on("c1", "*", (p, i) => order.push(`c1:${i.action}`));
  b.T.on("page", "echo", () => order.push("page:echo"));
  b.T.start();
  await b.flush();
  const res = await b.T.command("c1", "inc", { by: 1 }).then((r) => { order.push("resolved"); return r; });
  assert.deepEqual(order, ["c1:mine", "page:echo", "c1:echo", "resolved"]);
  assert.equal(res.action.action, "mine");
  assert.deepEqual(plain(b.T.receipts()), [rc(LOBBY, "c1", "L")]);
  await assert.rejects(b.T.command("c1", "bad"), (e) => e.status === 422 && e.code === "rejected" && e.message === "no");
});

test("command with a null action runs only the self-echoes", async () => {
  const b = browser({
    server: (ep) => ep === "handshake"
      ? { status: 200, json: { handshake_id: "h", receipts: [] } }
      : { status: 200, json: { action: null, self_echoes: [{ action: "e", params: {}, cid: "page" }], receipts: { adds: [], drops: [] } } },
  });
  const seen = [];
  b.T.on("page", "*", (p, i) => seen.push(i.action));
  b.T.start();
  await b.T.command("page", "x", {});
  assert.deepEqual(seen, ["e"]);
});

test("navigate: claims stored keys, applies receipts, render before self-echoes, stream kept", async () => {
  const b = browser({
    server: (ep, body) => {
      if (ep === "handshake") return { status: 200, json: { handshake_id: "h", receipts: [rc(ROOM, "page", "t1")] } };
      assert.deepEqual(body, { instance_id: ID, path: "/lobby", claimed: [{ channel: ROOM, cid: "page" }] });
      return {
        status: 200,
        json: {
          html: "<p>lobby</p>",
          receipts: { adds: [rc(LOBBY, "page", "L")], drops: [{ channel: ROOM, cid: "page" }] },
          self_echoes: [{ action: "hello", params: {}, cid: "page" }],
        },
      };
    },
  });
  b.T.start();
  await b.flush();
  b.es.open();
  const order = [];
  const out = await b.T.navigate("/lobby", async (html) => {
    order.push(html);
    b.T.off("page");
    b.T.on("page", "hello", () => order.push("hello"));
  });
  assert.deepEqual(order, ["<p>lobby</p>", "hello"]);
  assert.equal(out.html, "<p>lobby</p>");
  assert.deepEqual(plain(b.T.receipts()), [rc(LOBBY, "page", "L")]);
  assert.equal(b.streams.length, 1);
  assert.equal(b.es.closed, false);
});

/** Time between consecutive handshakes while every handshake fails. */
async function failingDelays(random, n, status = 500) {
  const b = browser({ random, server: () => { if (status === 0) throw new TypeError("offline"); return { status, json: { error: { code: "x", message: "x" } } }; } });
  b.T.start();
  await b.advance(200000);
  const at = b.handshakes().map((p) => p.at);
  return { b, delays: at.slice(1, n + 1).map((t, i) => t - at[i]) };
}

test("reconnect delays: 250 doubling, capped at 5000, ±25 % jitter, unlimited", async () => {
  const exact = [250, 500, 1000, 2000, 4000, 5000, 5000, 5000];
  const mid = await failingDelays(0.5, 8);
  assert.deepEqual(mid.delays, exact);
  assert.equal(mid.b.T.connectionStatus, "reconnecting");
  assert.ok(mid.b.handshakes().length > 40); // keeps trying
  const low = await failingDelays(0, 8);
  low.delays.forEach((d, i) => assert.ok(Math.abs(d - exact[i] * 0.75) < 1e-6, `${d}`));
  const high = await failingDelays(0.999999, 8);
  high.delays.forEach((d, i) => assert.ok(d <= exact[i] * 1.25 && d > exact[i] * 1.2499, `${d}`));
  // Network errors and 401 retry the same way.
  assert.deepEqual((await failingDelays(0.5, 4, 0)).delays, exact.slice(0, 4));
  assert.deepEqual((await failingDelays(0.5, 4, 401)).delays, exact.slice(0, 4));
});

test("stream error closes the EventSource and reconnects with a fresh handshake", async () => {
  const b = browser();
  b.T.start();
  await b.flush();
  const first = b.es;
  first.open();
  first.error();
  assert.equal(first.closed, true);
  assert.equal(b.T.connectionStatus, "reconnecting");
  first.emit("broadcast", { action: "a", params: {}, cids: ["page"] }); // ignored: stale stream
  await b.advance(249);
  assert.equal(b.handshakes().length, 1);
  await b.advance(1);
  assert.equal(b.handshakes().length, 2);
  assert.deepEqual(b.handshakes()[1].body.receipts, ["t1'"]); // the re-signed token
  assert.equal(b.es.url.endsWith("handshake_id=h2"), true);
  b.es.open();
  assert.deepEqual(b.statuses, ["connecting", "open", "reconnecting", "open"]);
});

test("attempts reset only after the stream stayed open 5 s", async () => {
  const b = browser();
  b.T.start();
  await b.flush();
  const gap = async (openFor) => {
    const before = b.handshakes().length;
    b.es.open();
    await b.advance(openFor);
    const t0 = b.now;
    b.es.error();
    while (b.handshakes().length === before) await b.advance(10);
    return b.handshakes().at(-1).at - t0;
  };
  await b.advance(0);
  // Close each stream after 1 s: backoff grows.
  const g = [];
  for (let i = 0; i < 3; i++) g.push(await gap(1000));
  assert.deepEqual(g.map((d) => Math.round(d / 10) * 10), [250, 500, 1000]);
  // Open 4999 ms: still not stable.
  assert.equal(Math.round((await gap(4999)) / 10) * 10, 2000);
  // Open 5 s: reset, back to 250.
  assert.equal(Math.round((await gap(5000)) / 10) * 10, 250);
});

test("watchdog: 35 s without any event reconnects; heartbeats keep it alive", async () => {
  const b = browser();
  b.T.start();
  await b.flush();
  const s = b.es;
  s.open();
  await b.advance(34000);
  s.emit("heartbeat", {});
  await b.advance(34999);
  assert.equal(s.closed, false);
  s.emit("broadcast", { action: "x", params: {}, cids: [] }); // any event counts
  await b.advance(34999);
  assert.equal(s.closed, false);
  assert.equal(b.handshakes().length, 1);
  await b.advance(1);
  assert.equal(s.closed, true);
  assert.equal(b.T.connectionStatus, "reconnecting");
  await b.advance(250);
  assert.equal(b.handshakes().length, 2);
  assert.equal(b.streams.length, 2);
});

test("watchdog also covers a stream that never opens", async () => {
  const b = browser();
  b.T.start();
  await b.flush();
  await b.advance(35000);
  assert.equal(b.streams[0].closed, true);
  assert.equal(b.T.connectionStatus, "reconnecting");
});

test("pagehide closes (status closed, no reconnect); pageshow reconnects", async () => {
  const b = browser();
  b.T.start();
  await b.flush();
  b.es.open();
  b.fire("pagehide");
  assert.equal(b.streams[0].closed, true);
  assert.equal(b.T.connectionStatus, "closed");
  assert.equal(b.attrs["data-tidings-status"], "closed");
  await b.advance(100000);
  assert.equal(b.handshakes().length, 1);
  assert.equal(b.streams.length, 1);
  b.fire("pageshow");
  assert.equal(b.T.connectionStatus, "connecting");
  await b.flush();
  assert.equal(b.handshakes().length, 2);
  b.es.open();
  assert.deepEqual(b.statuses, ["connecting", "open", "closed", "connecting", "open"]);
  b.fire("pageshow"); // not after a pagehide: nothing
  await b.flush();
  assert.equal(b.handshakes().length, 2);
});

test("pagehide during an in-flight handshake cancels it", async () => {
  let release;
  const b = browser({
    server: () => new Promise((r) => { release = () => r({ status: 200, json: { handshake_id: "h", receipts: [rc(ROOM, "page", "z")] } }); }),
  });
  b.T.start();
  await b.flush();
  b.fire("pagehide");
  release();
  await b.advance(10000);
  assert.equal(b.streams.length, 0);
  assert.equal(b.T.connectionStatus, "closed");
});

test("receipt changes made during a handshake survive its replacement", async () => {
  let release;
  const b = browser({
    server: (ep) => ep === "handshake"
      ? new Promise((r) => { release = () => r({ status: 200, json: { handshake_id: "h", receipts: [rc(ROOM, "page", "t1'")] } }); })
      : { status: 200, json: { action: null, self_echoes: [], receipts: { adds: [rc(LOBBY, "c1", "new")], drops: [] } } },
  });
  b.T.start();
  await b.flush();
  await b.T.command("c1", "join", {});
  release();
  await b.flush();
  assert.deepEqual(plain(b.T.receipts()), [rc(ROOM, "page", "t1'"), rc(LOBBY, "c1", "new")]);
});
