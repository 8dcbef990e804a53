// The official @supabase/realtime-js client (unmodified, 2.119.1) against
// the Tidings interop server, every scenario under vsn 1.0.0 and 2.0.0.

import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import {
  serverPerFile,
  rtClient,
  closeClient,
  subscribeChannel,
  joined,
  isStatus,
  uniq,
  Inbox,
  sleep,
} from './helpers.mjs'

const fx = serverPerFile()
const { client } = fx

/** Presence state as `{key: [meta without presence_ref]}`, keys sorted. */
function plainState(ch) {
  const s = ch.presenceState()
  return Object.fromEntries(
    Object.keys(s)
      .sort()
      .map((k) => [k, s[k].map(({ presence_ref, ...m }) => m)]),
  )
}

async function untilState(ch, expected, what) {
  const deadline = Date.now() + 3000
  for (;;) {
    const got = plainState(ch)
    try {
      assert.deepEqual(got, expected)
      return
    } catch (e) {
      if (Date.now() > deadline) throw new Error(`${what}: presence state ${JSON.stringify(got)} != ${JSON.stringify(expected)}`)
    }
    await sleep(20)
  }
}

for (const vsn of ['1.0.0', '2.0.0']) {
  describe(`realtime-js vsn ${vsn}`, () => {
    test('subscribe → SUBSCRIBED on /socket and /realtime/v1', async () => {
      const a = client(vsn)
      const { ch, statuses } = await joined(a, uniq('room'))
      assert.equal(ch.state, 'joined')
      assert.equal(ch.topic.startsWith('realtime:room-'), true)
      assert.deepEqual(
        statuses.items.map((s) => s.status),
        ['SUBSCRIBED'],
      )
      const b = fx.clientAt(`ws://127.0.0.1:${fx.server.port}/realtime/v1`, vsn)
      const jb = await joined(b, uniq('room'))
      assert.equal(jb.ch.state, 'joined')
    })

    test('broadcast reaches the other client; the sender only with self: true', async () => {
      const name = uniq('bc')
      const a = client(vsn) // sender without self
      const b = client(vsn) // receiver
      const s = client(vsn) // sender with self
      const A = await joined(a, name)
      const B = await joined(b, name)
      const S = await joined(s, name, { broadcast: { self: true } })

      assert.equal(await A.ch.send({ type: 'broadcast', event: 'ping', payload: { n: 1, s: 'é' } }), 'ok')
      const got = await B.broadcasts.waitFor((p) => p.event === 'ping', 'ping at B')
      assert.deepEqual(got, { type: 'broadcast', event: 'ping', payload: { n: 1, s: 'é' } })
      await S.broadcasts.waitFor((p) => p.event === 'ping', 'ping at S')

      // the self sender gets its own message
      await S.ch.send({ type: 'broadcast', event: 'echo', payload: { n: 2 } })
      assert.deepEqual(await S.broadcasts.waitFor((p) => p.event === 'echo', 'own echo at S'), {
        type: 'broadcast',
        event: 'echo',
        payload: { n: 2 },
      })
      // A received `echo` (fanned out after `ping`), so had `ping` come back
      // to A it would be there by now.
      await A.broadcasts.waitFor((p) => p.event === 'echo', 'echo at A')
      assert.deepEqual(
        A.broadcasts.items.map((p) => p.event),
        ['echo'],
        'the sender without self must not get its own broadcast',
      )
      assert.equal(B.broadcasts.filter((p) => p.event === 'ping').length, 1)
      assert.equal(S.broadcasts.filter((p) => p.event === 'echo').length, 1)
    })

    test("ack: true → send() resolves 'ok' from the server's reply", async () => {
      const name = uniq('ack')
      const a = client(vsn)
      const b = client(vsn)
      const A = await joined(a, name, { broadcast: { ack: true } })
      const B = await joined(b, name)
      const results = []
      for (let i = 0; i < 3; i++) {
        results.push(await A.ch.send({ type: 'broadcast', event: 'acked', payload: { i } }, { timeout: 2000 }))
      }
      assert.deepEqual(results, ['ok', 'ok', 'ok'])
      await B.broadcasts.waitFor((p) => p.event === 'acked' && p.payload.i === 2, 'third acked message')
      assert.deepEqual(
        B.broadcasts.items.map((p) => p.payload.i),
        [0, 1, 2],
      )
    })

    test("wildcard event '*' and case-insensitive event match", async () => {
      const name = uniq('wild')
      const a = client(vsn)
      const b = client(vsn)
      const A = await joined(a, name)
      const cursor = new Inbox('cursor binding')
      const other = new Inbox('other binding')
      const B = await joined(b, name, {}, (ch) => {
        ch.on('broadcast', { event: 'cursor' }, (p) => cursor.push(p))
        ch.on('broadcast', { event: 'other' }, (p) => other.push(p))
      })
      await A.ch.send({ type: 'broadcast', event: 'alpha', payload: { k: 'a' } })
      await A.ch.send({ type: 'broadcast', event: 'Cursor', payload: { x: 1, y: 2 } })
      await A.ch.send({ type: 'broadcast', event: 'done', payload: {} })
      await B.broadcasts.waitFor((p) => p.event === 'done', 'done at B')
      // '*' saw all three, in order
      assert.deepEqual(
        B.broadcasts.items.map((p) => p.event),
        ['alpha', 'Cursor', 'done'],
      )
      // `cursor` matched `Cursor`, and nothing else
      assert.deepEqual(cursor.items, [{ type: 'broadcast', event: 'Cursor', payload: { x: 1, y: 2 } }])
      assert.deepEqual(other.items, [])
    })

    test('presence: join, sync, leave on untrack, unsubscribe and disconnect', async () => {
      const name = uniq('pres')
      const setup = (ch, { presence }) => {
        ch.on('presence', { event: 'sync' }, () => presence.push({ event: 'sync' }))
        ch.on('presence', { event: 'join' }, (p) => presence.push(p))
        ch.on('presence', { event: 'leave' }, (p) => presence.push(p))
      }
      const a = client(vsn)
      const b = client(vsn)
      const c = rtClient(fx.server, vsn) // disconnected mid-test; not closed by `fx`
      try {
        const A = await joined(a, name, { presence: { key: 'alice' } }, setup)
        assert.equal(await A.ch.track({ name: 'alice', n: 1 }), 'ok')
        await untilState(A.ch, { alice: [{ name: 'alice', n: 1 }] }, 'A after own track')

        // B joins late: presence_state carries alice
        const B = await joined(b, name, { presence: { key: 'bob' } }, setup)
        await untilState(B.ch, { alice: [{ name: 'alice', n: 1 }] }, 'B from presence_state')
        assert.equal(await B.ch.track({ name: 'bob' }), 'ok')
        const both = { alice: [{ name: 'alice', n: 1 }], bob: [{ name: 'bob' }] }
        await untilState(A.ch, both, 'A after bob tracks')
        await untilState(B.ch, both, 'B after own track (diff goes to the sender too)')
        // same phx_ref seen by both, and one meta per key
        const refA = A.ch.presenceState().alice[0].presence_ref
        assert.equal(typeof refA, 'string')
        assert.ok(refA.length > 0)
        assert.equal(B.ch.presenceState().alice[0].presence_ref, refA)
        assert.equal(B.ch.presenceState().bob[0].presence_ref, A.ch.presenceState().bob[0].presence_ref)
        assert.notEqual(refA, A.ch.presenceState().bob[0].presence_ref)
        const joinBob = await A.presence.waitFor((p) => p.event === 'join' && p.key === 'bob', 'join bob at A')
        assert.deepEqual(
          joinBob.newPresences.map(({ presence_ref, ...m }) => m),
          [{ name: 'bob' }],
        )

        // re-track with a new payload replaces the meta (one meta, new ref)
        assert.equal(await A.ch.track({ name: 'alice', n: 2 }), 'ok')
        const both2 = { alice: [{ name: 'alice', n: 2 }], bob: [{ name: 'bob' }] }
        await untilState(A.ch, both2, 'A after alice updates')
        await untilState(B.ch, both2, 'B after alice updates')
        assert.notEqual(B.ch.presenceState().alice[0].presence_ref, refA)
        const alice2 = { alice: [{ name: 'alice', n: 2 }] }

        // untrack → leave
        assert.equal(await B.ch.untrack(), 'ok')
        const leave1 = await A.presence.waitFor((p) => p.event === 'leave' && p.key === 'bob', 'leave bob (untrack)')
        assert.deepEqual(
          leave1.leftPresences.map(({ presence_ref, ...m }) => m),
          [{ name: 'bob' }],
        )
        await untilState(A.ch, alice2, 'A after bob untracks')
        await untilState(B.ch, alice2, 'B after own untrack')

        // track again, then unsubscribe → leave
        assert.equal(await B.ch.track({ name: 'bob', again: true }), 'ok')
        await untilState(A.ch, { alice: [{ name: 'alice', n: 2 }], bob: [{ name: 'bob', again: true }] }, 'A after re-track')
        const leavesBefore = A.presence.filter((p) => p.event === 'leave').length
        await B.ch.unsubscribe()
        await A.presence.waitFor(
          () => A.presence.filter((p) => p.event === 'leave' && p.key === 'bob').length === 2,
          'leave bob (unsubscribe)',
        )
        await untilState(A.ch, alice2, 'A after bob unsubscribes')
        assert.equal(A.presence.filter((p) => p.event === 'leave').length, leavesBefore + 1)

        // a third client tracks, then drops its whole socket → leave
        const C = await joined(c, name, { presence: { key: 'carol' } }, setup)
        assert.equal(await C.ch.track({ name: 'carol' }), 'ok')
        await untilState(A.ch, { alice: [{ name: 'alice', n: 2 }], carol: [{ name: 'carol' }] }, 'A after carol tracks')
        await c.disconnect()
        await A.presence.waitFor((p) => p.event === 'leave' && p.key === 'carol', 'leave carol (disconnect)')
        await untilState(A.ch, alice2, 'A after carol disconnects')
      } finally {
        await closeClient(c)
      }
    })

    test('leave → CLOSED, and the channel no longer receives', async () => {
      const name = uniq('leave')
      const a = client(vsn)
      const b = client(vsn)
      const A = await joined(a, name)
      const B = await joined(b, name)
      assert.equal(await A.ch.unsubscribe(), 'ok')
      await A.statuses.waitFor(isStatus('CLOSED'), 'CLOSED')
      assert.equal(A.ch.state, 'closed')
      assert.deepEqual(
        A.statuses.items.map((s) => s.status),
        ['SUBSCRIBED', 'CLOSED'],
      )
      // the server forgot A: a fresh channel object on A joins again fine
      const A2 = await joined(a, name)
      await B.ch.send({ type: 'broadcast', event: 'after', payload: {} })
      await A2.broadcasts.waitFor((p) => p.event === 'after', 'after at rejoined A')
      assert.deepEqual(A.broadcasts.items, [])
    })

    test('setAuth(token) is accepted: the channel stays joined and still receives', async () => {
      const name = uniq('auth')
      const a = client(vsn)
      const b = client(vsn)
      const A = await joined(a, name, { broadcast: { ack: true } })
      const B = await joined(b, name)
      await a.setAuth('token-1')
      // the ack reply comes after the server handled access_token on the same socket
      assert.equal(await A.ch.send({ type: 'broadcast', event: 'x', payload: {} }, { timeout: 2000 }), 'ok')
      await a.setAuth('token-2')
      await B.ch.send({ type: 'broadcast', event: 'after-auth', payload: { v: 2 } })
      assert.deepEqual(await A.broadcasts.waitFor((p) => p.event === 'after-auth', 'broadcast after setAuth'), {
        type: 'broadcast',
        event: 'after-auth',
        payload: { v: 2 },
      })
      assert.equal(A.ch.state, 'joined')
      assert.deepEqual(
        A.statuses.items.map((s) => s.status),
        ['SUBSCRIBED'],
      )
      assert.deepEqual(A.system.items, [])
    })

    test("access_token 'revoked' → system error then CLOSED (no rejoin)", async () => {
      const name = uniq('revoke')
      const a = client(vsn)
      const A = await joined(a, name)
      await a.setAuth('revoked')
      const sys = await A.system.waitFor(() => true, 'system message')
      assert.deepEqual(sys, {
        extension: 'system',
        status: 'error',
        message: 'Unauthorized: Token has been revoked',
        channel: name,
      })
      await A.statuses.waitFor(isStatus('CLOSED'), 'CLOSED after revoke')
      assert.equal(A.ch.state, 'closed')
      await sleep(300) // no rejoin follows
      assert.deepEqual(
        A.statuses.items.map((s) => s.status),
        ['SUBSCRIBED', 'CLOSED'],
      )
    })

    test("a join carrying access_token 'revoked' is refused", async () => {
      const a = client(vsn)
      await a.setAuth('revoked')
      const C = subscribeChannel(a, uniq('revjoin'))
      const err = await C.statuses.waitFor(isStatus('CHANNEL_ERROR'), 'CHANNEL_ERROR')
      assert.equal(err.err.message, 'Unauthorized: Token has been revoked')
      await a.removeChannel(C.ch)
    })

    test('unauthorized join → CHANNEL_ERROR with the Unauthorized reason', async () => {
      const a = client(vsn)
      const name = uniq('denied')
      const C = subscribeChannel(a, name)
      const { err } = await C.statuses.waitFor(isStatus('CHANNEL_ERROR'), 'CHANNEL_ERROR')
      assert.ok(err instanceof Error)
      assert.equal(err.message, `Unauthorized: You do not have permissions to read from this Channel topic: ${name}`)
      assert.equal(C.statuses.filter(isStatus('SUBSCRIBED')).length, 0)
      await a.removeChannel(C.ch)
    })

    test('a broadcast from Rust server code (HubHandle::broadcast_action) is received', async () => {
      const name = uniq('srv')
      const a = client(vsn)
      const evt = new Inbox('srv-event binding')
      const A = await joined(a, name, {}, (ch) => ch.on('broadcast', { event: 'srv-event' }, (p) => evt.push(p)))
      const payload = { text: 'from rust', n: [1, 2, 3], nested: { ok: true } }
      assert.equal(await fx.server.broadcast(name, 'srv-event', payload), 'ok')
      assert.deepEqual(await evt.waitFor(() => true, 'server broadcast'), {
        type: 'broadcast',
        event: 'srv-event',
        payload,
      })
      assert.equal(A.broadcasts.items.length, 1)
    })
  })
}

describe('realtime-js across vsns', () => {
  test('a 2.0.0 sender (binary kind 3) reaches a 1.0.0 receiver and back', async () => {
    const name = uniq('xvsn')
    const v1 = client('1.0.0')
    const v2 = client('2.0.0')
    const A = await joined(v1, name)
    const B = await joined(v2, name)
    await B.ch.send({ type: 'broadcast', event: 'from-v2', payload: { s: 'ünï', n: 2 } })
    assert.deepEqual(await A.broadcasts.waitFor((p) => p.event === 'from-v2', 'from-v2 at V1'), {
      type: 'broadcast',
      event: 'from-v2',
      payload: { s: 'ünï', n: 2 },
    })
    await A.ch.send({ type: 'broadcast', event: 'from-v1', payload: [1, null, 'x'] })
    assert.deepEqual(await B.broadcasts.waitFor((p) => p.event === 'from-v1', 'from-v1 at V2'), {
      type: 'broadcast',
      event: 'from-v1',
      payload: [1, null, 'x'],
    })
  })
})
