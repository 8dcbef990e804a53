// The upstream `phoenix` npm client (1.8.16, vsn 2.0.0 JSON arrays) against
// the Tidings interop server, talking with realtime-js clients of both vsns.

import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import {
  startServer,
  rtClient,
  closeClient,
  joined,
  uniq,
  within,
  Inbox,
  sleep,
  WebSocket,
  PhoenixSocket,
} from './helpers.mjs'

const { Presence } = createRequire(import.meta.url)('phoenix')

let server
const clients = []
const sockets = []
before(async () => {
  server = await startServer()
})
after(async () => {
  await Promise.all(clients.map(closeClient))
  await Promise.all(sockets.map((s) => within(new Promise((r) => s.disconnect(r)), 'phoenix disconnect')))
  await server?.stop()
})

function phoenixSocket() {
  const s = new PhoenixSocket(server.endpoint, {
    transport: WebSocket,
    params: { apikey: 'k' },
    timeout: 3000,
    heartbeatIntervalMs: 1000,
    reconnectAfterMs: () => 100,
  })
  sockets.push(s)
  s.connect()
  return s
}

/** Resolves with `[status, response]` of a phoenix Push. */
function outcome(push, what) {
  return within(
    new Promise((resolve) => {
      push.receive('ok', (r) => resolve(['ok', r]))
      push.receive('error', (r) => resolve(['error', r]))
      push.receive('timeout', () => resolve(['timeout']))
    }),
    what,
    4000,
  )
}

function phoenixChannel(socket, topic, params) {
  const ch = socket.channel(topic, params)
  const broadcasts = new Inbox(`phoenix ${topic} broadcasts`)
  ch.on('broadcast', (p) => broadcasts.push(p))
  return { ch, broadcasts }
}

test('phoenix: vsn 2.0.0 on the wire, join ok with postgres_changes echo', async () => {
  const s = phoenixSocket()
  assert.match(s.endPointURL(), /\/socket\/websocket\?apikey=k&vsn=2\.0\.0$/)
  const { ch } = phoenixChannel(s, `realtime:${uniq('pjoin')}`, {
    config: { broadcast: { self: false }, postgres_changes: [{ event: 'INSERT', schema: 'public', table: 't' }] },
  })
  const [status, resp] = await outcome(ch.join(), 'join reply')
  assert.equal(status, 'ok')
  assert.equal(resp.postgres_changes.length, 1)
  const { id, ...rest } = resp.postgres_changes[0]
  assert.deepEqual(rest, { event: 'INSERT', schema: 'public', table: 't' })
  assert.equal(typeof id, 'number')
  assert.equal(ch.state, 'joined')
})

test('phoenix: a denied join is an error reply with the Unauthorized reason', async () => {
  const s = phoenixSocket()
  const name = uniq('denied')
  const { ch } = phoenixChannel(s, `realtime:${name}`, {})
  const [status, resp] = await outcome(ch.join(), 'join reply')
  assert.equal(status, 'error')
  assert.deepEqual(resp, { reason: `Unauthorized: You do not have permissions to read from this Channel topic: ${name}` })
  ch.leave() // stop the rejoin timer
})

for (const vsn of ['1.0.0', '2.0.0']) {
  describe(`phoenix ⇄ realtime-js vsn ${vsn}`, () => {
    test('broadcast both ways, ack reply, leave', async () => {
      const name = uniq('mixed')
      const s = phoenixSocket()
      const P = phoenixChannel(s, `realtime:${name}`, { config: { broadcast: { self: false, ack: true } } })
      assert.deepEqual(await outcome(P.ch.join(), 'phoenix join'), ['ok', { postgres_changes: [] }])

      const rt = rtClient(server, vsn)
      clients.push(rt)
      const R = await joined(rt, name)

      // phoenix → realtime-js (ack: true gets an ok reply)
      const push = P.ch.push('broadcast', { type: 'broadcast', event: 'hi', payload: { a: 1 } })
      assert.deepEqual(await outcome(push, 'ack of phoenix broadcast'), ['ok', {}])
      assert.deepEqual(await R.broadcasts.waitFor((p) => p.event === 'hi', 'hi at realtime-js'), {
        type: 'broadcast',
        event: 'hi',
        payload: { a: 1 },
      })

      // realtime-js → phoenix (a V2 realtime-js sends binary kind 3)
      await R.ch.send({ type: 'broadcast', event: 'yo', payload: { b: [2, 'x'] } })
      assert.deepEqual(await P.broadcasts.waitFor((p) => p.event === 'yo', 'yo at phoenix'), {
        type: 'broadcast',
        event: 'yo',
        payload: { b: [2, 'x'] },
      })
      // phoenix (self: false) did not get its own `hi`
      assert.deepEqual(
        P.broadcasts.items.map((p) => p.event),
        ['yo'],
      )

      // leave: the server's ok reply closes the phoenix channel
      const closed = new Promise((r) => P.ch.onClose(r))
      assert.deepEqual(await outcome(P.ch.leave(), 'leave reply'), ['ok', {}])
      await within(closed, 'phoenix onClose')
      assert.equal(P.ch.state, 'closed')
      // after the leave the server no longer routes to phoenix
      await R.ch.send({ type: 'broadcast', event: 'gone', payload: {} })
      await sleep(100)
      assert.equal(P.broadcasts.filter((p) => p.event === 'gone').length, 0)
    })

    test('phoenix Presence sees what realtime-js tracks', async () => {
      const name = uniq('ppres')
      const s = phoenixSocket()
      const P = phoenixChannel(s, `realtime:${name}`, { config: { presence: { enabled: true, key: 'phx' } } })
      const presence = new Presence(P.ch)
      const syncs = new Inbox('phoenix presence syncs')
      presence.onSync(() => syncs.push(presence.list((key, { metas }) => ({ key, metas }))))
      assert.equal((await outcome(P.ch.join(), 'phoenix join'))[0], 'ok')
      await syncs.waitFor((l) => l.length === 0, 'initial empty presence_state')

      const rt = rtClient(server, vsn)
      clients.push(rt)
      const R = await joined(rt, name, { presence: { key: 'rt-user' } })
      assert.equal(await R.ch.track({ who: 'rt' }), 'ok')
      const list = await syncs.waitFor((l) => l.length === 1, 'rt-user in phoenix presence')
      assert.equal(list[0].key, 'rt-user')
      assert.equal(list[0].metas.length, 1)
      const { phx_ref, ...meta } = list[0].metas[0]
      assert.deepEqual(meta, { who: 'rt' })
      assert.equal(typeof phx_ref, 'string')

      await R.ch.untrack()
      await syncs.waitFor((l) => l.length === 0 && syncs.items.length >= 3, 'rt-user gone')
      assert.deepEqual(presence.list(), [])
      P.ch.leave()
    })
  })
}
