// Binary user broadcasts over the socket with the official realtime-js
// client (unmodified, 2.119.1). Under vsn 2.0.0,
// `channel.send({type: 'broadcast', event, payload: <ArrayBuffer>})` goes out
// as a binary kind-3 frame with encoding 0; the server relays it as a kind-4
// frame (encoding 0) to every joined V2 socket, which realtime-js hands to the
// callback as `payload.payload`, an ArrayBuffer. V1 sockets get nothing for
// it (their wire embeds payloads as JSON; the Realtime server drops binary for
// V1 too), which the tests prove by a JSON broadcast sent after it being the
// first thing they receive.
//
// Not tested, as it is the client's own undefined behaviour: realtime-js
// under vsn 1.0.0 JSON-encodes the whole push, so an ArrayBuffer payload goes
// out as `{}` and is broadcast as that JSON object. A Uint8Array (not an
// ArrayBuffer) under vsn 2.0.0 is JSON-encoded too, as `{"0":…,"1":…}`.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { serverPerFile, joined, uniq } from './helpers.mjs'

const fx = serverPerFile()
const { client } = fx

/** Every byte a JSON or UTF-8 reading would mangle: NUL, 0x80, a lone 0xc3, 0xff, `{`. */
const TRICKY = [0x00, 0x01, 0x7f, 0x80, 0xc3, 0xff, 0x7b, 0x00]

/** A fresh ArrayBuffer holding `bytes`. */
const arrayBuffer = (bytes) => new Uint8Array(bytes).buffer

const isEvent = (event) => (b) => b.event === event

/** Asserts a received broadcast carries `bytes` as an ArrayBuffer. */
function assertBinary(got, event, bytes, who) {
  assert.equal(got.type, 'broadcast', who)
  assert.equal(got.event, event, who)
  assert.ok(got.payload instanceof ArrayBuffer, `${who}: the payload is an ArrayBuffer, got ${got.payload?.constructor?.name}`)
  assert.deepEqual([...new Uint8Array(got.payload)], bytes, `${who}: the bytes arrive intact`)
  assert.equal(got.meta, undefined, `${who}: no metadata`)
}

/** Joins a raw `ws` socket of `vsn` to `topic`. */
async function rawJoined(vsn, topic) {
  const s = await fx.rawSocket(`ws://127.0.0.1:${fx.server.port}/socket/websocket?apikey=k&vsn=${vsn}`)
  const payload = { config: { broadcast: { self: false } } }
  if (vsn === '2.0.0') s.send(['1', '1', topic, 'phx_join', payload])
  else s.send({ join_ref: '1', ref: '1', topic, event: 'phx_join', payload })
  const reply = await s.frames.waitFor((f) => (Array.isArray(f) ? f[1] : f.ref) === '1', 'raw join reply')
  assert.equal((Array.isArray(reply) ? reply[4] : reply.payload).status, 'ok', `raw join: ${JSON.stringify(reply)}`)
  return s
}

test('an ArrayBuffer sent by a V2 client reaches V2 clients intact, a raw V2 socket as the exact kind-4 frame, and no V1 client', async () => {
  const name = uniq('bin')
  const topic = `realtime:${name}`
  const A = await joined(client('2.0.0'), name)
  const B = await joined(client('2.0.0'), name)
  const V1 = await joined(client('1.0.0'), name)
  const raw = await rawJoined('2.0.0', topic)
  const rawV1 = await rawJoined('1.0.0', topic)

  assert.equal(await A.ch.send({ type: 'broadcast', event: 'bin', payload: arrayBuffer(TRICKY) }), 'ok')
  assertBinary(await B.broadcasts.waitFor(isEvent('bin'), 'bin at B'), 'bin', TRICKY, 'B')

  const frame = await raw.frames.waitFor((f) => f.binary, 'a binary frame at the raw socket')
  const expected = Buffer.concat([
    Buffer.from([4, Buffer.byteLength(topic), 3, 0, 0]),
    Buffer.from(topic),
    Buffer.from('bin'),
    Buffer.from(TRICKY),
  ])
  assert.deepEqual(frame.binary, expected, 'kind 4, topic and event sizes, no metadata, encoding 0, then the bytes')

  // A JSON broadcast from the same sender comes after the binary one
  // everywhere: at the V1 client it is the first broadcast of all.
  assert.equal(await A.ch.send({ type: 'broadcast', event: 'after', payload: { n: 1 } }), 'ok')
  const after = { type: 'broadcast', event: 'after', payload: { n: 1 } }
  assert.deepEqual(await V1.broadcasts.waitFor(isEvent('after'), 'after at the V1 client'), after)
  assert.deepEqual(V1.broadcasts.items, [after], 'the V1 client got nothing for the binary broadcast')
  assert.deepEqual(V1.system.items, [], 'and no system message either')
  assert.equal(V1.ch.state, 'joined')
  assert.deepEqual(await B.broadcasts.waitFor(isEvent('after'), 'after at B'), after)
  assert.deepEqual(B.broadcasts.items.map((b) => b.event), ['bin', 'after'], 'B got each once, in order')
  const text = await raw.frames.waitFor((f) => Array.isArray(f) && f[3] === 'broadcast', 'after at the raw socket')
  assert.deepEqual(text, [null, null, topic, 'broadcast', after])
  assert.equal(raw.frames.items.filter((f) => f.binary).length, 1, 'one binary frame at the raw socket')
  const v1Text = await rawV1.frames.waitFor((f) => f.event === 'broadcast', 'after at the raw V1 socket')
  assert.deepEqual(v1Text, { topic, event: 'broadcast', payload: after, ref: null })
  assert.deepEqual(
    rawV1.frames.items.filter((f) => f.binary || f.event === 'broadcast'),
    [v1Text],
    'on the wire too, a V1 socket gets no frame for the binary broadcast',
  )
  assert.deepEqual(A.broadcasts.items, [], 'without self the sender gets neither')
})

test('every byte value, a 70 000-byte buffer and an empty one arrive intact', async () => {
  const name = uniq('bin-sizes')
  const A = await joined(client('2.0.0'), name)
  const B = await joined(client('2.0.0'), name)
  const all = Array.from({ length: 256 }, (_, i) => i)
  const big = Array.from({ length: 70000 }, (_, i) => (i * 7 + (i >> 8)) & 0xff)
  for (const [event, bytes] of [
    ['all', all],
    ['big', big],
    ['empty', []],
  ]) {
    assert.equal(await A.ch.send({ type: 'broadcast', event, payload: arrayBuffer(bytes) }), 'ok')
    assertBinary(await B.broadcasts.waitFor(isEvent(event), `${event} at B`), event, bytes, `B (${event})`)
  }
})

test('self: true → the sender receives its own ArrayBuffer', async () => {
  const name = uniq('bin-self')
  const S = await joined(client('2.0.0'), name, { broadcast: { self: true } })
  const B = await joined(client('2.0.0'), name)
  assert.equal(await S.ch.send({ type: 'broadcast', event: 'mine', payload: arrayBuffer(TRICKY) }), 'ok')
  assertBinary(await S.broadcasts.waitFor(isEvent('mine'), 'own echo at S'), 'mine', TRICKY, 'S')
  assertBinary(await B.broadcasts.waitFor(isEvent('mine'), 'mine at B'), 'mine', TRICKY, 'B')
})

test("ack: true → send() of an ArrayBuffer resolves 'ok' from the server's reply", async () => {
  const name = uniq('bin-ack')
  const A = await joined(client('2.0.0'), name, { broadcast: { ack: true } })
  const B = await joined(client('2.0.0'), name)
  const results = []
  for (let i = 0; i < 3; i++) {
    results.push(await A.ch.send({ type: 'broadcast', event: 'acked', payload: arrayBuffer([i, 0xff]) }, { timeout: 2000 }))
  }
  assert.deepEqual(results, ['ok', 'ok', 'ok'])
  await B.broadcasts.waitFor((b) => b.event === 'acked' && new Uint8Array(b.payload)[0] === 2, 'third acked message')
  assert.deepEqual(
    B.broadcasts.items.map((b) => [...new Uint8Array(b.payload)]),
    [
      [0, 0xff],
      [1, 0xff],
      [2, 0xff],
    ],
  )
})
