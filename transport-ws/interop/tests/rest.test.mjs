// Supabase's REST broadcast endpoints through the official realtime-js
// client (unmodified, 2.119.1): a client that never subscribes sends with
// `channel.send({type: 'broadcast', …})` (the implicit REST fallback, POST
// <base>/api/broadcast) and `channel.httpSend(event, payload)` (POST
// <base>/api/broadcast/<topic>/events/<event>); a subscribed client on the
// same topic receives both, under vsn 1.0.0 and 2.0.0, with the socket URL
// ending in /socket or /realtime/v1. A binary `httpSend` payload (a typed
// array or ArrayBuffer, sent as application/octet-stream) reaches a vsn
// 2.0.0 subscriber as an ArrayBuffer (kind 4) and a vsn 1.0.0 subscriber not
// at all. Refusals reach the sender as realtime-js reports them: 'error' from
// send, a rejection carrying the server's `{"error": …}` from httpSend.

import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { serverPerFile, joined, uniq, sleep } from '../helpers.mjs'

const fx = serverPerFile()
const client = fx.clientAt

const isEvent = (event) => (b) => b.event === event

for (const vsn of ['1.0.0', '2.0.0']) {
  describe(`REST broadcast, realtime-js vsn ${vsn}`, () => {
    for (const base of ['/socket', '/realtime/v1']) {
      test(`send() fallback and httpSend() from an unsubscribed client reach a subscriber (${base})`, async () => {
        const endpoint = `ws://127.0.0.1:${fx.server.port}${base}`
        const name = uniq('rest')
        const receiver = client(endpoint, vsn)
        const bystander = client(endpoint, vsn)
        const R = await joined(receiver, name)
        const B = await joined(bystander, uniq('elsewhere'))

        const sender = client(endpoint, vsn)
        const ch = sender.channel(name)
        assert.equal(ch.state, 'closed', 'the sender never joins')
        assert.match(ch.broadcastEndpointURL, new RegExp(`^http://127\\.0\\.0\\.1:${fx.server.port}${base === '/socket' ? '' : base}/api/broadcast\\?`))

        assert.equal(await ch.send({ type: 'broadcast', event: 'implicit', payload: { n: 1, vsn } }), 'ok')
        assert.deepEqual(await R.broadcasts.waitFor(isEvent('implicit'), 'the implicit REST broadcast'), {
          type: 'broadcast',
          event: 'implicit',
          payload: { n: 1, vsn },
        })

        assert.deepEqual(await ch.httpSend('explicit event', { n: 2, list: [1, 'two'] }), { success: true })
        assert.deepEqual(await R.broadcasts.waitFor(isEvent('explicit event'), 'the httpSend broadcast'), {
          type: 'broadcast',
          event: 'explicit event',
          payload: { n: 2, list: [1, 'two'] },
        })

        const priv = sender.channel(name, { config: { private: true } })
        assert.deepEqual(await priv.httpSend('private', 'text payload'), { success: true })
        assert.deepEqual(await R.broadcasts.waitFor(isEvent('private'), 'the ?private=true broadcast'), {
          type: 'broadcast',
          event: 'private',
          payload: 'text payload',
        })

        await sleep(100)
        assert.equal(R.broadcasts.items.length, 3, 'each message arrives once')
        assert.deepEqual(B.broadcasts.items, [], 'a client on another topic hears nothing')
      })
    }

    test(`httpSend() of a binary payload: ${vsn === '2.0.0' ? 'an ArrayBuffer at the subscriber' : 'nothing at the subscriber'}`, async () => {
      const name = uniq('rest-bin')
      const R = await joined(client(fx.server.endpoint, vsn), name)
      const ch = client(fx.server.endpoint, vsn).channel(name)

      assert.deepEqual(await ch.httpSend('bin', new Uint8Array([1, 2, 3])), { success: true })
      assert.deepEqual(await ch.httpSend('buf', new Uint8Array([0, 0x80, 0xff]).buffer), { success: true })
      assert.deepEqual(await ch.httpSend('after', { ok: true }), { success: true })
      await R.broadcasts.waitFor(isEvent('after'), 'the JSON broadcast after the binary ones')
      if (vsn === '2.0.0') {
        const [bin, buf, after] = R.broadcasts.items
        for (const [got, event, bytes] of [
          [bin, 'bin', [1, 2, 3]],
          [buf, 'buf', [0, 0x80, 0xff]],
        ]) {
          assert.equal(got.event, event)
          assert.ok(got.payload instanceof ArrayBuffer, `${event}: an ArrayBuffer, got ${got.payload?.constructor?.name}`)
          assert.deepEqual([...new Uint8Array(got.payload)], bytes, `${event}: the bytes arrive intact`)
        }
        assert.deepEqual(after, { type: 'broadcast', event: 'after', payload: { ok: true } })
        assert.equal(R.broadcasts.items.length, 3, 'each message arrives once, in order')
      } else {
        assert.deepEqual(
          R.broadcasts.items,
          [{ type: 'broadcast', event: 'after', payload: { ok: true } }],
          'a vsn 1.0.0 subscriber gets nothing for a binary payload; the JSON one after it comes first',
        )
      }
    })

    test('refusals: a denied topic, a revoked token, a bad API key', async () => {
      const name = uniq('rest')
      const receiver = client(fx.server.endpoint, vsn)
      const R = await joined(receiver, name)

      const sender = client(fx.server.endpoint, vsn)
      const denied = sender.channel(uniq('denied'))
      assert.equal(await denied.send({ type: 'broadcast', event: 'e', payload: {} }), 'error')
      await assert.rejects(denied.httpSend('e', {}), {
        message: /^Unauthorized: cannot broadcast on realtime:denied-.*: You do not have permissions to write to this Channel topic/,
      })

      const badKey = client(fx.server.endpoint, vsn, { params: { apikey: 'bad-key' } })
      const bk = badKey.channel(name)
      assert.equal(await bk.send({ type: 'broadcast', event: 'e', payload: {} }), 'error')
      await assert.rejects(bk.httpSend('e', {}), { message: 'API key is not valid' })

      const revoked = client(fx.server.endpoint, vsn)
      await revoked.setAuth('revoked')
      const rv = revoked.channel(name)
      assert.equal(await rv.send({ type: 'broadcast', event: 'e', payload: {} }), 'error')
      await assert.rejects(rv.httpSend('e', {}), {
        message: `Unauthorized: cannot broadcast on realtime:${name}: Token has been revoked`,
      })

      await sleep(200)
      assert.deepEqual(R.broadcasts.items, [], 'nothing refused was broadcast')
      assert.deepEqual(await sender.channel(name).httpSend('after', { ok: true }), { success: true })
      assert.deepEqual((await R.broadcasts.waitFor(isEvent('after'), 'a broadcast after the refusals')).payload, { ok: true })
    })
  })
}
