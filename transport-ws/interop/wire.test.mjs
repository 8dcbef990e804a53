// Raw `ws` tests for wire details the clients hide: V1 objects never carry
// join_ref, exact reply shapes, join_ref discipline, HTTP refusals, and
// the close code on shutdown.

import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { startServer, rawSocket, refusedUpgrade, uniq, sleep, within } from './helpers.mjs'

let server
const open = []
before(async () => {
  server = await startServer()
})
after(async () => {
  await Promise.all(open.map((s) => within(s.close(), 'raw close').catch(() => s.ws.terminate())))
  await server?.stop()
})

async function raw(query) {
  const s = await rawSocket(`ws://127.0.0.1:${server.port}/socket/websocket?${query}`)
  open.push(s)
  return s
}

const V2 = 'apikey=k&vsn=2.0.0'
const V1 = 'apikey=k&vsn=1.0.0'
const ok = (response = {}) => ({ status: 'ok', response })

/** V2 frame predicate: [jr, ref, topic, event] match (undefined = any). */
const is = (jr, ref, topic, event) => (f) =>
  Array.isArray(f) &&
  (jr === undefined || f[0] === jr) &&
  (ref === undefined || f[1] === ref) &&
  (topic === undefined || f[2] === topic) &&
  (event === undefined || f[3] === event)

describe('vsn 1.0.0 (JSON objects)', () => {
  test('heartbeat, join, presence, broadcast, leave: objects with exactly topic/event/payload/ref', async () => {
    const s = await raw(V1)
    const t = `realtime:${uniq('v1')}`
    s.send({ topic: 'phoenix', event: 'heartbeat', payload: {}, ref: 'hb1' })
    assert.deepEqual(await s.frames.waitFor((f) => f.ref === 'hb1', 'heartbeat reply'), {
      topic: 'phoenix',
      event: 'phx_reply',
      payload: ok(),
      ref: 'hb1',
    })
    const config = { broadcast: { self: true, ack: true }, presence: { key: 'k1', enabled: true }, postgres_changes: [] }
    s.send({ topic: t, event: 'phx_join', payload: { config }, ref: 'j1', join_ref: 'j1' })
    assert.deepEqual(await s.frames.waitFor((f) => f.ref === 'j1' && f.event === 'phx_reply', 'join reply'), {
      topic: t,
      event: 'phx_reply',
      payload: ok({ postgres_changes: [] }),
      ref: 'j1',
    })
    assert.deepEqual(await s.frames.waitFor((f) => f.event === 'presence_state', 'presence_state'), {
      topic: t,
      event: 'presence_state',
      payload: {},
      ref: null,
    })
    s.send({ topic: t, event: 'presence', payload: { type: 'presence', event: 'track', payload: { a: 1 } }, ref: 'p1', join_ref: 'j1' })
    assert.deepEqual(await s.frames.waitFor((f) => f.ref === 'p1', 'track reply'), {
      topic: t,
      event: 'phx_reply',
      payload: ok(),
      ref: 'p1',
    })
    const diff = await s.frames.waitFor((f) => f.event === 'presence_diff', 'presence_diff')
    assert.deepEqual(Object.keys(diff.payload.joins), ['k1'])
    assert.deepEqual(diff.payload.leaves, {})
    assert.equal(diff.ref, null)
    s.send({ topic: t, event: 'broadcast', payload: { type: 'broadcast', event: 'E', payload: { x: 1 } }, ref: 'b1', join_ref: 'j1' })
    assert.deepEqual(await s.frames.waitFor((f) => f.event === 'broadcast', 'self broadcast'), {
      topic: t,
      event: 'broadcast',
      payload: { type: 'broadcast', event: 'E', payload: { x: 1 } },
      ref: null,
    })
    assert.deepEqual(await s.frames.waitFor((f) => f.ref === 'b1', 'ack reply'), {
      topic: t,
      event: 'phx_reply',
      payload: ok(),
      ref: 'b1',
    })
    s.send({ topic: t, event: 'phx_leave', payload: {}, ref: 'l1', join_ref: 'j1' })
    assert.deepEqual(await s.frames.waitFor((f) => f.ref === 'l1', 'leave reply'), {
      topic: t,
      event: 'phx_reply',
      payload: ok(),
      ref: 'l1',
    })
    assert.deepEqual(await s.frames.waitFor((f) => f.event === 'phx_close', 'phx_close'), {
      topic: t,
      event: 'phx_close',
      payload: {},
      ref: 'j1',
    })
    // no frame, of any kind, carried join_ref
    assert.ok(s.frames.items.length >= 8)
    for (const f of s.frames.items) {
      assert.ok(!Array.isArray(f), `V1 frame must be an object: ${JSON.stringify(f)}`)
      assert.deepEqual(Object.keys(f).sort(), ['event', 'payload', 'ref', 'topic'], JSON.stringify(f))
    }
  })

  test('no vsn in the query means 1.0.0', async () => {
    const s = await raw('apikey=k')
    s.send({ topic: 'phoenix', event: 'heartbeat', payload: {}, ref: '7' })
    assert.deepEqual(await s.frames.waitFor((f) => f.ref === '7', 'heartbeat reply'), {
      topic: 'phoenix',
      event: 'phx_reply',
      payload: ok(),
      ref: '7',
    })
  })
})

describe('vsn 2.0.0 (JSON arrays)', () => {
  test('heartbeat reply shape', async () => {
    const s = await raw(V2)
    s.send([null, '3', 'phoenix', 'heartbeat', {}])
    assert.deepEqual(await s.frames.waitFor(is(undefined, '3'), 'heartbeat reply'), [null, '3', 'phoenix', 'phx_reply', ok()])
  })

  test('join reply echoes postgres_changes in order, each with a stable numeric id', async () => {
    const pc = [
      { event: 'INSERT', schema: 'public', table: 'todos' },
      { event: '*', schema: 'public', table: 'messages', filter: 'room_id=eq.7' },
      { event: 'DELETE', schema: 'private' },
    ]
    const s = await raw(V2)
    const t = `realtime:${uniq('pc')}`
    s.send(['1', '1', t, 'phx_join', { config: { postgres_changes: pc } }])
    const reply = await s.frames.waitFor(is('1', '1', t, 'phx_reply'), 'join reply')
    assert.equal(reply[4].status, 'ok')
    const got = reply[4].response.postgres_changes
    assert.equal(got.length, 3)
    got.forEach((entry, i) => {
      const { id, ...rest } = entry
      assert.deepEqual(rest, pc[i], `entry ${i} echoes the filter`)
      assert.ok(Number.isSafeInteger(id), `entry ${i} id is an integer: ${id}`)
    })
    assert.equal(new Set(got.map((e) => e.id)).size, 3, 'distinct filters, distinct ids')
    // the same filters on another topic get the same ids
    const t2 = `realtime:${uniq('pc')}`
    s.send(['2', '2', t2, 'phx_join', { config: { postgres_changes: pc } }])
    const reply2 = await s.frames.waitFor(is('2', '2', t2, 'phx_reply'), 'second join reply')
    assert.deepEqual(reply2[4].response.postgres_changes, got)
  })

  test('duplicate join → phx_close with the OLD join_ref, then the new join; stale join_ref ignored', async () => {
    const s = await raw(V2)
    const t = `realtime:${uniq('dup')}`
    const config = { broadcast: { self: true, ack: true } }
    s.send(['1', '1', t, 'phx_join', { config }])
    await s.frames.waitFor(is('1', '1', t, 'phx_reply'), 'first join reply')
    s.send(['5', '5', t, 'phx_join', { config }])
    const newReply = await s.frames.waitFor(is('5', '5', t, 'phx_reply'), 'second join reply')
    assert.deepEqual(newReply, ['5', '5', t, 'phx_reply', ok({ postgres_changes: [] })])
    const closes = s.frames.filter(is(undefined, undefined, t, 'phx_close'))
    assert.deepEqual(closes, [['1', '1', t, 'phx_close', {}]])
    assert.ok(s.frames.items.indexOf(closes[0]) < s.frames.items.indexOf(newReply), 'close of the old join comes first')

    // a push under the old join_ref is dropped: no reply, no fan-out
    s.send(['1', '6', t, 'broadcast', { type: 'broadcast', event: 'stale', payload: {} }])
    // current join_ref, and a null join_ref, are both accepted
    s.send(['5', '7', t, 'broadcast', { type: 'broadcast', event: 'fresh', payload: { n: 1 } }])
    s.send([null, '8', t, 'broadcast', { type: 'broadcast', event: 'nulljr', payload: {} }])
    assert.deepEqual(await s.frames.waitFor(is(undefined, '7'), 'ack of fresh'), ['5', '7', t, 'phx_reply', ok()])
    // phoenix puts the channel's join_ref on replies even when the push had none
    const nullAck = await s.frames.waitFor(is(undefined, '8'), 'ack of null-join_ref push')
    assert.deepEqual(nullAck.slice(1), ['8', t, 'phx_reply', ok()])
    await s.frames.waitFor((f) => f[3] === 'broadcast' && f[4].event === 'nulljr', 'nulljr fan-out')
    assert.deepEqual(
      s.frames.filter(is(undefined, undefined, t, 'broadcast')),
      [
        [null, null, t, 'broadcast', { type: 'broadcast', event: 'fresh', payload: { n: 1 } }],
        [null, null, t, 'broadcast', { type: 'broadcast', event: 'nulljr', payload: {} }],
      ],
    )
    assert.deepEqual(s.frames.filter(is(undefined, '6')), [], 'the stale push got no reply')
  })

  test('unmatched topic: pushes to unjoined topics and joins of unrouted topics', async () => {
    const s = await raw(V2)
    const t = `realtime:${uniq('never')}`
    s.send(['4', '9', t, 'broadcast', { type: 'broadcast', event: 'x', payload: {} }])
    assert.deepEqual(await s.frames.waitFor(is(undefined, '9'), 'error reply'), [
      null,
      '9',
      t,
      'phx_reply',
      { status: 'error', response: { reason: 'unmatched topic' } },
    ])
    s.send(['10', '10', 'rooms:lobby', 'phx_join', {}])
    assert.deepEqual(await s.frames.waitFor(is(undefined, '10'), 'join error reply'), [
      null,
      '10',
      'rooms:lobby',
      'phx_reply',
      { status: 'error', response: { reason: 'unmatched topic' } },
    ])
    // phx_leave of an unjoined topic is just ok
    s.send(['11', '12', t, 'phx_leave', {}])
    const leave = await s.frames.waitFor(is(undefined, '12'), 'leave reply')
    assert.deepEqual(leave.slice(1), ['12', t, 'phx_reply', ok()])
    // `realtime:` with no name
    s.send(['13', '13', 'realtime:', 'phx_join', {}])
    assert.deepEqual(await s.frames.waitFor(is(undefined, '13'), 'empty name'), [
      '13',
      '13',
      'realtime:',
      'phx_reply',
      { status: 'error', response: { reason: 'TopicNameRequired: You must provide a topic name' } },
    ])
  })

  test('presence_state carries the join_ref, presence_diff none; leave → reply then phx_close', async () => {
    const s = await raw(V2)
    const t = `realtime:${uniq('pv2')}`
    s.send(['3', '3', t, 'phx_join', { config: { presence: { enabled: true, key: 'me' } } }])
    await s.frames.waitFor(is('3', '3', t, 'phx_reply'), 'join reply')
    assert.deepEqual(await s.frames.waitFor(is(undefined, undefined, t, 'presence_state'), 'presence_state'), [
      '3',
      null,
      t,
      'presence_state',
      {},
    ])
    s.send(['3', '4', t, 'presence', { type: 'presence', event: 'track', payload: { v: 1 } }])
    assert.deepEqual(await s.frames.waitFor(is(undefined, '4'), 'track reply'), ['3', '4', t, 'phx_reply', ok()])
    const diff = await s.frames.waitFor(is(undefined, undefined, t, 'presence_diff'), 'presence_diff')
    assert.equal(diff[0], null)
    assert.equal(diff[1], null)
    const metas = diff[4].joins.me.metas
    assert.equal(metas.length, 1)
    assert.equal(metas[0].v, 1)
    assert.equal(typeof metas[0].phx_ref, 'string')
    assert.deepEqual(diff[4].leaves, {})

    s.send(['3', '5', t, 'phx_leave', {}])
    assert.deepEqual(await s.frames.waitFor(is(undefined, '5'), 'leave reply'), ['3', '5', t, 'phx_reply', ok()])
    assert.deepEqual(await s.frames.waitFor(is(undefined, undefined, t, 'phx_close'), 'phx_close'), [
      '3',
      '3',
      t,
      'phx_close',
      {},
    ])
    // after the leave the topic is unjoined again
    s.send(['3', '6', t, 'broadcast', { type: 'broadcast', event: 'x', payload: {} }])
    assert.deepEqual((await s.frames.waitFor(is(undefined, '6'), 'unmatched after leave'))[4], {
      status: 'error',
      response: { reason: 'unmatched topic' },
    })
  })

  test('presence update: diff joins the new meta (phx_ref_prev) and leaves the old; same payload is a no-op; non-map refused', async () => {
    const s = await raw(V2)
    const t = `realtime:${uniq('pupd')}`
    s.send(['1', '1', t, 'phx_join', { config: { presence: { enabled: true, key: 'me' } } }])
    await s.frames.waitFor(is('1', '1', t, 'phx_reply'), 'join reply')
    const diffs = () => s.frames.filter(is(undefined, undefined, t, 'presence_diff'))
    s.send(['1', '2', t, 'presence', { type: 'presence', event: 'track', payload: { v: 1 } }])
    await s.frames.waitFor(() => diffs().length === 1, 'first diff')
    const first = diffs()[0][4].joins.me.metas[0]
    s.send(['1', '3', t, 'presence', { type: 'presence', event: 'track', payload: { v: 2 } }])
    await s.frames.waitFor(() => diffs().length === 2, 'update diff')
    const upd = diffs()[1][4]
    assert.deepEqual(upd.leaves, { me: { metas: [first] } })
    assert.equal(upd.joins.me.metas.length, 1)
    const { phx_ref, phx_ref_prev, ...meta } = upd.joins.me.metas[0]
    assert.deepEqual(meta, { v: 2 })
    assert.equal(phx_ref_prev, first.phx_ref)
    assert.notEqual(phx_ref, first.phx_ref)
    // identical payload: ok reply, no diff
    s.send(['1', '4', t, 'presence', { type: 'presence', event: 'track', payload: { v: 2 } }])
    assert.deepEqual(await s.frames.waitFor(is(undefined, '4'), 'same-payload reply'), ['1', '4', t, 'phx_reply', ok()])
    s.send(['1', '5', t, 'presence', { type: 'presence', event: 'track', payload: [1] }])
    assert.deepEqual(await s.frames.waitFor(is(undefined, '5'), 'non-map reply'), [
      '1',
      '5',
      t,
      'phx_reply',
      { status: 'error', response: { reason: 'Presence track payload must be a map' } },
    ])
    s.send(['1', '6', t, 'presence', { type: 'presence', event: 'untrack' }])
    await s.frames.waitFor(is(undefined, '6'), 'untrack reply')
    await s.frames.waitFor(() => diffs().length === 3, 'untrack diff')
    assert.deepEqual(diffs()[2][4], { joins: {}, leaves: { me: { metas: [upd.joins.me.metas[0]] } } })
  })

  test("revoked access_token → system (with join_ref) then phx_close, no reply to access_token", async () => {
    const s = await raw(V2)
    const name = uniq('rev')
    const t = `realtime:${name}`
    s.send(['1', '1', t, 'phx_join', {}])
    await s.frames.waitFor(is('1', '1', t, 'phx_reply'), 'join reply')
    s.send(['1', '2', t, 'access_token', { access_token: 'fine' }])
    s.send(['1', '3', t, 'access_token', { access_token: 'revoked' }])
    assert.deepEqual(await s.frames.waitFor(is(undefined, undefined, t, 'system'), 'system push'), [
      '1',
      null,
      t,
      'system',
      { extension: 'system', status: 'error', message: 'Unauthorized: Token has been revoked', channel: name },
    ])
    assert.deepEqual(await s.frames.waitFor(is(undefined, undefined, t, 'phx_close'), 'phx_close'), ['1', '1', t, 'phx_close', {}])
    assert.deepEqual(s.frames.filter(is(undefined, '2')), [], 'no reply to an accepted access_token')
    assert.deepEqual(s.frames.filter(is(undefined, '3')), [], 'no reply to a refused access_token')
  })
})

describe('HTTP upgrade refusals and shutdown', () => {
  test('unknown vsn → HTTP 400 with a JSON error', async () => {
    const r = await refusedUpgrade(`ws://127.0.0.1:${server.port}/socket/websocket?apikey=k&vsn=3.0.0`)
    assert.equal(r.status, 400)
    assert.equal(typeof JSON.parse(r.body).error, 'string')
  })

  test("apikey 'bad-key' → HTTP 401 {error}", async () => {
    const r = await refusedUpgrade(`ws://127.0.0.1:${server.port}/socket/websocket?apikey=bad-key&vsn=2.0.0`)
    assert.equal(r.status, 401)
    assert.deepEqual(JSON.parse(r.body), { error: 'API key is not valid' })
    // …and the same on the /realtime/v1 path
    const r2 = await refusedUpgrade(`ws://127.0.0.1:${server.port}/realtime/v1/websocket?apikey=bad-key&vsn=1.0.0`)
    assert.equal(r2.status, 401)
  })

  // The interop binary shuts the hub down at stdin EOF, as a deploy would:
  // every socket gets a 1012 close frame (clients reconnect).
  test('shutdown (stdin EOF) closes open sockets with 1012', async () => {
    const own = await startServer()
    try {
      const s = await rawSocket(`ws://127.0.0.1:${own.port}/socket/websocket?${V2}`)
      s.send(['1', '1', `realtime:${uniq('bye')}`, 'phx_join', {}])
      await s.frames.waitFor(is('1', '1', undefined, 'phx_reply'), 'join reply')
      const stopping = own.stop()
      const { code } = await within(s.closed, 'close frame')
      assert.equal(code, 1012)
      assert.equal((await stopping).code, 0)
    } finally {
      await own.kill()
    }
  })
})
