// Real-browser end-to-end test of the chat example (runtime-smol/examples/chat.rs).
//
// Two Chromium contexts (two sessions) open /rooms/1, A over SSE, B over the
// WebSocket (?transport=ws), and talk; then the server is killed and restarted on
// the same port with the same secret, and both pages must reconnect by themselves
// (each over its transport) and keep talking. Then both open /rooms/2?transport=ws
// (the instance stream and commands over the Phoenix WebSocket) and talk; then the
// lobby (/lobby, one page per transport) talks with a Node @supabase/realtime-js
// client joined to realtime:lobby, both ways.
//
// realtime-js and ws are resolved from transport-ws/interop/node_modules (run.sh
// installs them there from that package's lockfile).
//
// Needs a prebuilt chat binary (CHAT_BIN, default <repo>/target/release/examples/chat)
// and a Chromium (CHROMIUM, default /usr/bin/chromium). run.sh provides both.
// Run: node --test runtime-smol/tests/browser/

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants, mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO_ROOT = path.resolve(HERE, '../../..');
const CHAT_BIN = path.resolve(
  process.env.CHAT_BIN || path.join(REPO_ROOT, 'target/release/examples/chat'),
);
const ARTIFACTS = path.join(REPO_ROOT, 'ci-artifacts');
const INTEROP = path.join(REPO_ROOT, 'transport-ws/interop/package.json');
// Set explicitly for both server runs, so the restarted server accepts the
// receipts and session cookies the pages already hold.
const SECRET = `tidings-browser-test-${randomBytes(8).toString('hex')}`;

const STEP_TIMEOUT = 10_000; // ordinary waits
const RECONNECT_TIMEOUT = 20_000; // client backoff caps at 5 s (+25% jitter)
const SERVER_START_TIMEOUT = 10_000;
const DOWNTIME = 2_500; // how long the server stays dead before the restart

/** A port that was free a moment ago: bind port 0, read it, close. */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Rejects with `what` timed out after `ms`, unless `promise` settles first. */
function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const log = []; // server output, browser console, status changes (dumped on failure)
const note = (line) => log.push(`[${new Date().toISOString()}] ${line}`);

/** A running chat server process. */
class ChatServer {
  constructor(proc, url) {
    this.proc = proc;
    this.url = url;
    this.exited = new Promise((resolve) => {
      if (proc.exitCode !== null || proc.signalCode !== null) resolve();
      else proc.once('exit', () => resolve());
    });
  }

  get alive() {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** Starts the binary on `port`; resolves once it prints its URL. */
  static start(port, label) {
    const proc = spawn(CHAT_BIN, ['--port', String(port)], {
      env: { ...process.env, TIDINGS_SECRET: SECRET },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.add(proc);
    proc.once('exit', (code, signal) => {
      children.delete(proc);
      note(`server ${label}: exited (code ${code}, signal ${signal})`);
    });
    createInterface({ input: proc.stderr }).on('line', (l) => note(`server ${label} stderr: ${l}`));
    const stdout = createInterface({ input: proc.stdout });
    const ready = new Promise((resolve, reject) => {
      stdout.on('line', (l) => {
        note(`server ${label} stdout: ${l}`);
        const m = /Tidings chat on (http:\/\/\S+?)\/?\s/.exec(`${l} `);
        if (m) resolve(new ChatServer(proc, m[1]));
      });
      proc.once('error', (e) => reject(new Error(`cannot start ${CHAT_BIN}: ${e.message}`)));
      proc.once('exit', (code, signal) =>
        reject(new Error(`server ${label} exited before printing its URL (code ${code}, signal ${signal})`)),
      );
    });
    return withTimeout(ready, SERVER_START_TIMEOUT, `server ${label} start`).catch((e) => {
      proc.kill('SIGKILL');
      throw e;
    });
  }

  /** SIGKILLs the process (a crash, not a graceful stop) and waits for it to be gone. */
  async kill() {
    if (this.alive) this.proc.kill('SIGKILL');
    await withTimeout(this.exited, STEP_TIMEOUT, 'server exit');
  }
}

// Last resort: never leave a server behind, even if the runner dies mid-test.
const children = new Set();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

const statusSelector = (s) => `html[data-tidings-status="${s}"]`;

/** Waits for the page's <html data-tidings-status> to read `status`. */
async function waitStatus(page, status, timeout = STEP_TIMEOUT) {
  await page.waitForSelector(statusSelector(status), { state: 'attached', timeout });
}

/** Waits for a message line containing `text` in the page's #messages. */
async function waitMessage(page, text, timeout = STEP_TIMEOUT) {
  await page.locator('#messages .msg', { hasText: text }).first().waitFor({ state: 'visible', timeout });
}

/** Resolves when `pred(item)` holds for an item pushed to `list` (or already there). */
function waitItem(list, pred, what, ms = STEP_TIMEOUT) {
  return withTimeout(
    new Promise((resolve) => {
      const poll = () => {
        const hit = list.find(pred);
        if (hit !== undefined) resolve(hit);
        else setTimeout(poll, 20);
      };
      poll();
    }),
    ms,
    `${what} (got ${JSON.stringify(list).slice(0, 500)})`,
  );
}

/** Types `text` into #text and clicks #send. */
async function say(page, text) {
  await page.locator('#text').pressSequentially(text, { timeout: STEP_TIMEOUT });
  await page.locator('#send').click({ timeout: STEP_TIMEOUT });
}

describe('chat example in a real browser', { timeout: 120_000 }, () => {
  let port;
  let server;
  let browser;
  const pages = {}; // name -> Page
  const sockets = { A: [], B: [] }; // name -> WebSocket URLs the page opened
  const eventStreams = { A: 0, B: 0 }; // name -> /tidings/events requests
  let realtime; // the realtime-js client, if made
  const pageErrors = []; // uncaught exceptions in the pages
  let failed = false;

  /** Runs a step; remembers failures so `after` dumps the diagnostics. */
  const step = (fn) => async () => {
    try {
      await fn();
    } catch (e) {
      failed = true;
      throw e;
    }
  };

  const nonce = randomBytes(3).toString('hex');
  const first = `hello from A before the restart ${nonce}`;
  const second = `hello from B after the restart ${nonce}`;

  before(step(async () => {
    try {
      accessSync(CHAT_BIN, constants.X_OK);
    } catch {
      throw new Error(
        `chat binary not found at ${CHAT_BIN}: build it with ` +
          '`cargo build --release -p tidings-smol --example chat` or set CHAT_BIN',
      );
    }
    mkdirSync(ARTIFACTS, { recursive: true });
    port = await freePort();
    server = await ChatServer.start(port, '#1');

    browser = await withTimeout(
      chromium.launch({
        executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
        headless: true,
        timeout: 30_000,
        args: [
          '--no-sandbox',
          '--disable-gpu',
          '--disable-background-networking',
          '--disable-component-update',
          '--disable-sync',
          '--no-first-run',
          '--disable-quic',
        ],
      }),
      40_000,
      'chromium launch',
    );
    note(`browser: Chromium ${browser.version()}`);

    for (const name of ['A', 'B']) {
      // A context each: separate cookie jars, so separate sessions.
      const context = await browser.newContext({ viewport: { width: 1000, height: 640 } });
      context.setDefaultTimeout(STEP_TIMEOUT);
      const page = await context.newPage();
      page.on('console', (m) => note(`page ${name} console.${m.type()}: ${m.text()}`));
      page.on('pageerror', (e) => {
        pageErrors.push(`page ${name}: ${e.message}`);
        note(`page ${name} pageerror: ${e.stack || e}`);
      });
      page.on('response', (r) => {
        if (r.status() >= 400) note(`page ${name} response ${r.status()}: ${r.request().method()} ${r.url()}`);
      });
      page.on('requestfailed', (r) => note(`page ${name} request failed: ${r.method()} ${r.url()} ${r.failure()?.errorText}`));
      page.on('websocket', (ws) => {
        sockets[name].push(ws.url());
        note(`page ${name} websocket: ${ws.url()}`);
        ws.on('close', () => note(`page ${name} websocket closed: ${ws.url()}`));
      });
      page.on('request', (r) => {
        if (r.url().includes('/tidings/events')) eventStreams[name]++;
      });
      page.on('framenavigated', (f) => {
        if (f === page.mainFrame()) note(`page ${name} navigated: ${f.url()}`);
      });
      pages[name] = page;
    }
  }));

  after(async () => {
    // Diagnostics first, while the pages still exist.
    if (failed && browser) {
      for (const [name, page] of Object.entries(pages)) {
        await page
          .screenshot({ path: path.join(ARTIFACTS, `chat-failure-${name}.png`), fullPage: true, timeout: 5_000 })
          .catch(() => {});
        const status = await page
          .evaluate(() => document.documentElement.getAttribute('data-tidings-status'))
          .catch((e) => `unknown (${e.message})`);
        note(`page ${name} final status: ${status}`);
      }
    }
    try {
      await realtime?.disconnect();
    } catch {
      /* best effort */
    }
    await server?.kill().catch(() => {});
    for (const c of children) c.kill('SIGKILL');
    await withTimeout(browser?.close() ?? Promise.resolve(), 15_000, 'browser close').catch(() => {});
    try {
      mkdirSync(ARTIFACTS, { recursive: true });
      writeFileSync(path.join(ARTIFACTS, 'chat-test.log'), `${log.join('\n')}\n`);
    } catch {
      /* diagnostics only */
    }
    if (failed) console.error(`--- chat browser test log ---\n${log.join('\n')}\n--- end ---`);
  });

  it('both pages open /rooms/1 (A over SSE, B over WS) and connect', { timeout: 30_000 }, step(async () => {
    await Promise.all([
      pages.A.goto(`${server.url}/rooms/1`, { timeout: STEP_TIMEOUT }),
      pages.B.goto(`${server.url}/rooms/1?transport=ws`, { timeout: STEP_TIMEOUT }),
    ]);
    await Promise.all(Object.values(pages).map((p) => waitStatus(p, 'open')));
    assert.equal(await pages.A.evaluate(() => Tidings.transport), 'sse');
    assert.equal(await pages.B.evaluate(() => Tidings.transport), 'ws');
    // Marker to detect a reload (which would lose the page's messages).
    await Promise.all(Object.values(pages).map((p) => p.evaluate(() => { window.__tidingsTestMarker = true; })));
  }));

  it('a message sent from A appears in B and in A', { timeout: 30_000 }, step(async () => {
    await say(pages.A, first);
    await Promise.all([waitMessage(pages.B, first), waitMessage(pages.A, first)]);
    assert.equal(await pages.A.locator('#text').inputValue(), '', 'the input is cleared after sending');
  }));

  it('both pages show "reconnecting" when the server dies', { timeout: 30_000 }, step(async () => {
    await server.kill();
    await Promise.all(Object.values(pages).map((p) => waitStatus(p, 'reconnecting')));
  }));

  it('both pages reconnect by themselves when the server is back', { timeout: 60_000 }, step(async () => {
    // Stay down long enough for a few failed reconnect attempts (250, 500, 1000 ms…).
    await sleep(DOWNTIME);
    for (const [name, p] of Object.entries(pages)) {
      assert.equal(
        await p.evaluate(() => document.documentElement.getAttribute('data-tidings-status')),
        'reconnecting',
        `page ${name} is still reconnecting while the server is down`,
      );
    }
    // Same port, same secret. The listening socket may need a moment to be reusable.
    let lastError;
    server = null;
    for (let i = 0; i < 10 && !server; i++) {
      try {
        server = await ChatServer.start(port, `#2 (try ${i + 1})`);
      } catch (e) {
        lastError = e;
        await sleep(500);
      }
    }
    if (!server) throw lastError;
    await Promise.all(Object.values(pages).map((p) => waitStatus(p, 'open', RECONNECT_TIMEOUT)));
    for (const [name, p] of Object.entries(pages)) {
      assert.equal(
        await p.evaluate(() => window.__tidingsTestMarker === true),
        true,
        `page ${name} reconnected without reloading`,
      );
    }
  }));

  it('a message sent from B after the restart appears in A and in B', { timeout: 30_000 }, step(async () => {
    await say(pages.B, second);
    await Promise.all([waitMessage(pages.A, second), waitMessage(pages.B, second)]);
    // A still shows the conversation from before the restart.
    await waitMessage(pages.A, first, 1_000);
    assert.deepEqual(pageErrors, [], 'no uncaught exceptions in the pages');
    await pages.A.screenshot({ path: path.join(ARTIFACTS, 'chat.png'), fullPage: true, timeout: STEP_TIMEOUT });
  }));

  it('with ?transport=ws both pages connect over the WebSocket and talk', { timeout: 30_000 }, step(async () => {
    for (const name of ['A', 'B']) {
      sockets[name].length = 0;
      eventStreams[name] = 0;
    }
    await Promise.all(
      Object.values(pages).map((p) => p.goto(`${server.url}/rooms/2?transport=ws`, { timeout: STEP_TIMEOUT })),
    );
    await Promise.all(Object.values(pages).map((p) => waitStatus(p, 'open')));
    const text = `over the socket from A ${nonce}`;
    await say(pages.A, text);
    await Promise.all([waitMessage(pages.B, text), waitMessage(pages.A, text)]);
    const wsUrl = `${server.url.replace(/^http/, 'ws')}/socket/websocket?vsn=2.0.0`;
    for (const [name, p] of Object.entries(pages)) {
      assert.equal(await p.evaluate(() => Tidings.transport), 'ws', `page ${name} runs over WS`);
      assert.deepEqual(sockets[name], [wsUrl], `page ${name} opened one socket`);
      assert.equal(eventStreams[name], 0, `page ${name} opened no SSE stream`);
      assert.equal(await p.locator('#messages .msg').count(), 1, `page ${name} shows the message once`);
    }
    // Navigation links keep the transport.
    assert.equal(await pages.A.locator('nav a[href$="/lobby?transport=ws"]').count(), 1);
    assert.deepEqual(pageErrors, [], 'no uncaught exceptions in the pages');
  }));

  it('the lobby (one page on SSE, one on WS) talks with a realtime-js client on realtime:lobby', { timeout: 30_000 }, step(async () => {
    const require = createRequire(INTEROP);
    const { RealtimeClient } = require('@supabase/realtime-js');
    const WebSocket = require('ws');
    await Promise.all([
      pages.A.goto(`${server.url}/lobby`, { timeout: STEP_TIMEOUT }),
      pages.B.goto(`${server.url}/lobby?transport=ws`, { timeout: STEP_TIMEOUT }),
    ]);
    await Promise.all(Object.values(pages).map((p) => waitStatus(p, 'open')));
    assert.equal(await pages.A.evaluate(() => Tidings.transport), 'sse');
    assert.equal(await pages.B.evaluate(() => Tidings.transport), 'ws');

    realtime = new RealtimeClient(`${server.url.replace(/^http/, 'ws')}/socket`, {
      params: { apikey: 'browser-test' },
      transport: WebSocket,
      timeout: STEP_TIMEOUT,
      logger: () => {},
    });
    const got = []; // broadcast payloads the realtime-js client receives
    const channel = realtime.channel('lobby', { config: { broadcast: { self: false, ack: true } } });
    channel.on('broadcast', { event: 'message' }, (m) => got.push(m.payload));
    await withTimeout(
      new Promise((resolve, reject) => {
        channel.subscribe((status, err) => {
          note(`realtime-js: ${status}${err ? ` ${err.message}` : ''}`);
          if (status === 'SUBSCRIBED') resolve();
          else if (status !== 'CLOSED') reject(new Error(`realtime-js join: ${status} ${err?.message ?? ''}`));
        });
      }),
      STEP_TIMEOUT,
      'realtime-js join realtime:lobby',
    );

    // realtime-js -> pages (escaped: markup arrives as text).
    const fromRt = `hello from realtime-js <img src=x onerror="window.__pwned=1"> ${nonce}`;
    assert.equal(
      await channel.send({ type: 'broadcast', event: 'message', payload: { from: 'rt-js', text: fromRt } }),
      'ok',
    );
    await Promise.all(Object.values(pages).map((p) => waitMessage(p, fromRt)));
    for (const [name, p] of Object.entries(pages)) {
      assert.equal(await p.locator('#messages img').count(), 0, `page ${name} escaped the message`);
      assert.match(await p.locator('#messages .msg b').last().innerText(), /^rt-js$/);
    }

    // page (SSE) -> realtime-js and the other page (WS), and page (WS) -> realtime-js.
    const fromA = `hello from the SSE page ${nonce}`;
    const fromB = `hello from the WS page ${nonce}`;
    await say(pages.A, fromA);
    await say(pages.B, fromB);
    await Promise.all([
      waitMessage(pages.B, fromA),
      waitMessage(pages.A, fromB),
      waitItem(got, (m) => m.text === fromA && typeof m.from === 'string', 'realtime-js gets the SSE page message'),
      waitItem(got, (m) => m.text === fromB && typeof m.from === 'string', 'realtime-js gets the WS page message'),
    ]);
    assert.deepEqual(Object.keys(got.find((m) => m.text === fromA)).sort(), ['from', 'text']);
    assert.deepEqual(pageErrors, [], 'no uncaught exceptions in the pages');
    await pages.B.screenshot({ path: path.join(ARTIFACTS, 'chat-lobby.png'), fullPage: true, timeout: STEP_TIMEOUT });
  }));
});
