// Shared helpers for the interop suite: start/stop the Rust server under
// test, build realtime-js / phoenix clients, wait for events with short
// deadlines, and speak the raw Phoenix wire through `ws`.

import { before, after } from 'node:test'
import { spawn } from 'node:child_process'
import { createRequire } from 'node:module'
import { existsSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createInterface } from 'node:readline'

const require = createRequire(import.meta.url)
export const WebSocket = require('ws')
export const { RealtimeClient } = require('@supabase/realtime-js')
export const { Socket: PhoenixSocket } = require('phoenix')

const here = dirname(fileURLToPath(import.meta.url))
const repo = resolve(here, '..', '..')
export const BIN = process.env.TIDINGS_INTEROP_BIN || resolve(repo, 'target/debug/examples/interop')

/** How long any single wait may take (ms). */
export const WAIT_MS = 3000

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

/** Rejects after `ms` with a message naming what was awaited. */
export function within(promise, what, ms = WAIT_MS) {
  let timer
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)
  })
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer))
}

/** A list that remembers everything pushed and lets tests wait for a match. */
export class Inbox {
  constructor(name = 'inbox') {
    this.name = name
    this.items = []
    this.waiters = []
  }
  push(item) {
    this.items.push(item)
    for (const w of [...this.waiters]) {
      if (w.pred(item)) {
        this.waiters.splice(this.waiters.indexOf(w), 1)
        w.resolve(item)
      }
    }
  }
  /** The first item (already seen or future) matching `pred`. */
  waitFor(pred, what = 'a matching item', ms = WAIT_MS) {
    const seen = this.items.find(pred)
    if (seen !== undefined) return Promise.resolve(seen)
    let waiter
    const p = new Promise((resolve) => {
      waiter = { pred, resolve }
      this.waiters.push(waiter)
    })
    return within(p, `${this.name}: ${what}; got ${JSON.stringify(this.items).slice(0, 1500)}`, ms).finally(
      () => {
        const i = this.waiters.indexOf(waiter)
        if (i >= 0) this.waiters.splice(i, 1)
      },
    )
  }
  filter(pred) {
    return this.items.filter(pred)
  }
}

/**
 * Starts the interop server (`--port 0` unless `port` is given) and resolves
 * once it prints `listening <port>`.
 */
export async function startServer({ port = 0 } = {}) {
  if (!existsSync(BIN)) {
    throw new Error(
      `interop server binary not found at ${BIN}: run \`cargo build -p tidings-smol --example interop\` ` +
        `in the repository root (or set TIDINGS_INTEROP_BIN)`,
    )
  }
  const child = spawn(BIN, ['--port', String(port)], { stdio: ['pipe', 'pipe', 'pipe'] })
  const lines = new Inbox('server stdout')
  let stderr = ''
  child.stderr.on('data', (d) => {
    stderr += d
  })
  createInterface({ input: child.stdout }).on('line', (l) => lines.push(l))
  const exited = new Promise((r) => child.once('exit', (code, signal) => r({ code, signal })))
  let listening
  try {
    listening = await Promise.race([
      lines.waitFor((l) => l.startsWith('listening '), 'listening line', 10000),
      exited.then((e) => {
        throw new Error(`server exited before listening (${JSON.stringify(e)}): ${stderr}`)
      }),
    ])
  } catch (e) {
    child.kill('SIGKILL')
    throw e
  }
  const actualPort = Number(listening.split(' ')[1])
  let replies = 0
  return {
    port: actualPort,
    child,
    exited,
    lines,
    get stderr() {
      return stderr
    },
    /** `/socket` endpoint base for realtime-js / phoenix (they add /websocket). */
    endpoint: `ws://127.0.0.1:${actualPort}/socket`,
    /** Server-side broadcast through the stdin command; resolves with the reply line. */
    async broadcast(name, event, payload) {
      const n = ++replies
      child.stdin.write(`broadcast ${name} ${event} ${JSON.stringify(payload)}\n`)
      // replies come back in order: wait for the n-th reply line
      const isReply = (l) => l === 'ok' || l.startsWith('error')
      await lines.waitFor(() => lines.items.filter(isReply).length >= n, `reply #${n} to broadcast`)
      return lines.items.filter(isReply)[n - 1]
    },
    /** Hard kill (no goodbye to clients). */
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
      return exited
    },
    /** Graceful: close stdin, the server exits by itself. */
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return exited
      child.stdin.end()
      const t = setTimeout(() => child.kill('SIGKILL'), 3000)
      const r = await exited
      clearTimeout(t)
      return r
    },
  }
}

/**
 * A realtime-js client; remember to `await closeClient(c)`.
 *
 * Harness workaround (client-side, not a server matter): realtime-js
 * 2.119.1 `SocketAdapter.disconnect` arms a 10 s fallback `setTimeout` that
 * it never clears, so every disconnect pins Node's event loop for 10 s.
 * The instance's adapter gets the same method with that timer cleared on
 * success and unref'd; the package itself is untouched.
 */
export function rtClient(server, vsn, opts = {}) {
  const client = newRtClient(server, vsn, opts)
  const adapter = client.socketAdapter
  adapter.disconnect = function (callback, code, reason, timeout = 10000) {
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve('timeout'), timeout)
      t.unref()
      this.socket.disconnect(
        () => {
          clearTimeout(t)
          callback()
          resolve('ok')
        },
        code,
        reason,
      )
    })
  }
  return client
}

function newRtClient(server, vsn, opts) {
  return new RealtimeClient(typeof server === 'string' ? server : server.endpoint, {
    params: { apikey: 'k' },
    transport: WebSocket,
    vsn,
    timeout: 3000,
    heartbeatIntervalMs: 1000,
    reconnectAfterMs: () => 100,
    logger: () => {},
    ...opts,
  })
}

export async function closeClient(client) {
  await within(client.removeAllChannels(), 'removeAllChannels').catch(() => {})
  await within(client.disconnect(), 'client disconnect').catch(() => {})
}

/**
 * Creates a channel on `client`, records its subscribe statuses, broadcasts
 * and presence events, and subscribes. `setup(ch)` may add bindings first.
 * Returns `{ch, statuses, broadcasts, presence, system}` (Inboxes).
 */
export function subscribeChannel(client, name, config = {}, setup = () => {}) {
  const ch = client.channel(name, { config })
  const statuses = new Inbox(`${name} statuses`)
  const broadcasts = new Inbox(`${name} broadcasts`)
  const presence = new Inbox(`${name} presence`)
  const system = new Inbox(`${name} system`)
  ch.on('broadcast', { event: '*' }, (p) => broadcasts.push(p))
  ch.on('system', {}, (p) => system.push(p))
  setup(ch, { presence })
  ch.subscribe((status, err) => statuses.push({ status, err }))
  return { ch, statuses, broadcasts, presence, system }
}

export const isStatus = (s) => (x) => x.status === s

/** Subscribes and waits for SUBSCRIBED. */
export async function joined(client, name, config, setup) {
  const c = subscribeChannel(client, name, config, setup)
  await c.statuses.waitFor(isStatus('SUBSCRIBED'), `SUBSCRIBED on ${name}`)
  return c
}

/**
 * The usual setup of a test file: `before` its tests, starts one interop
 * server, `fx.server`; `after` them, closes every realtime-js client and raw
 * socket made through `fx`, then stops the server. Call it at the top level
 * of the file.
 */
export function serverPerFile() {
  const clients = []
  const sockets = []
  const fx = {
    server: undefined,
    /** A realtime-js client (`rtClient`) on `endpoint`, closed after the file. */
    clientAt(endpoint, vsn, opts) {
      const c = rtClient(endpoint, vsn, opts)
      clients.push(c)
      return c
    },
    /** A realtime-js client on the server's `/socket`, closed after the file. */
    client(vsn, opts) {
      return fx.clientAt(fx.server, vsn, opts)
    },
    /** A raw socket (`rawSocket`), closed after the file. */
    async rawSocket(url) {
      const s = await rawSocket(url)
      sockets.push(s)
      return s
    },
  }
  before(async () => {
    fx.server = await startServer()
  })
  after(async () => {
    await Promise.all(clients.map(closeClient))
    await Promise.all(sockets.map((s) => within(s.close(), 'raw close').catch(() => s.ws.terminate())))
    await fx.server?.stop()
  })
  return fx
}

/** A unique channel name per call so tests never see each other's traffic. */
let seq = 0
export const uniq = (base) => `${base}-${process.pid}-${++seq}`

// ---------------------------------------------------------------- raw wire

/**
 * Opens a raw WebSocket; resolves `{ws, frames, send, close}` once open.
 * `frames` holds every text frame, parsed JSON (plus `.raw`).
 */
export function rawSocket(url) {
  return within(
    new Promise((resolve, reject) => {
      const ws = new WebSocket(url)
      const frames = new Inbox(`raw frames ${url}`)
      const closed = new Promise((r) => ws.once('close', (code, reason) => r({ code, reason: String(reason) })))
      ws.on('message', (data, isBinary) => {
        if (isBinary) frames.push({ binary: Buffer.from(data) })
        else frames.push(JSON.parse(String(data)))
      })
      ws.once('unexpected-response', (_req, res) => {
        let body = ''
        res.on('data', (d) => (body += d))
        res.on('end', () => reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { status: res.statusCode, body })))
      })
      ws.once('error', (e) => reject(e))
      ws.once('open', () =>
        resolve({
          ws,
          frames,
          closed,
          send: (m) => ws.send(typeof m === 'string' ? m : JSON.stringify(m)),
          close: () => {
            ws.close()
            return closed
          },
        }),
      )
    }),
    `raw socket ${url}`,
  )
}

/** Resolves `{status, body}` of a refused upgrade. */
export async function refusedUpgrade(url) {
  try {
    const s = await rawSocket(url)
    s.ws.terminate()
    return { status: 101, body: '' }
  } catch (e) {
    if (e.status) return { status: e.status, body: e.body }
    throw e
  }
}
