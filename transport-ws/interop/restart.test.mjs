// Server restart: the server goes away (SIGKILL, or exit at stdin EOF) and a new one starts on the SAME port;
// realtime-js clients reconnect and rejoin by themselves.

import { describe, test, after } from 'node:test'
import assert from 'node:assert/strict'
import { startServer, rtClient, closeClient, joined, isStatus, uniq } from './helpers.mjs'

const servers = []
const clients = []
after(async () => {
  await Promise.all(clients.map(closeClient))
  await Promise.all(servers.map((s) => s.stop()))
})

async function server(port) {
  const s = await startServer({ port })
  servers.push(s)
  return s
}

const statusList = (c) => c.statuses.items.map((s) => s.status)

for (const vsn of ['1.0.0', '2.0.0']) {
  describe(`realtime-js vsn ${vsn} across a server restart`, () => {
    for (const how of ['kill', 'stop']) {
      test(`${how === 'kill' ? 'SIGKILL' : 'stop via stdin EOF'} → reconnect, rejoin, receive`, async () => {
        const first = await server(0)
        const port = first.port
        const name = uniq('restart')
        const a = rtClient(first, vsn)
        const b = rtClient(first, vsn)
        clients.push(a, b)
        const A = await joined(a, name)
        const B = await joined(b, name)

        const exit = how === 'kill' ? await first.kill() : await first.stop()
        if (how === 'kill') assert.equal(exit.signal, 'SIGKILL')
        else assert.equal(exit.code, 0, `graceful exit; stderr: ${first.stderr}`)
        await A.statuses.waitFor(isStatus('CHANNEL_ERROR'), 'CHANNEL_ERROR once the server is gone')
        await B.statuses.waitFor(isStatus('CHANNEL_ERROR'), 'CHANNEL_ERROR once the server is gone')
        assert.equal(A.ch.state, 'errored')

        const second = await server(port)
        assert.equal(second.port, port)
        const twice = (c) => c.statuses.filter(isStatus('SUBSCRIBED')).length === 2
        await A.statuses.waitFor(() => twice(A), 'A SUBSCRIBED again', 5000)
        await B.statuses.waitFor(() => twice(B), 'B SUBSCRIBED again', 5000)
        assert.equal(A.ch.state, 'joined')
        assert.equal(statusList(A).at(-1), 'SUBSCRIBED')

        // client → client after the restart
        await B.ch.send({ type: 'broadcast', event: 'after-restart', payload: { vsn } })
        assert.deepEqual(await A.broadcasts.waitFor((p) => p.event === 'after-restart', 'broadcast after restart'), {
          type: 'broadcast',
          event: 'after-restart',
          payload: { vsn },
        })
        // server → both clients: the new server knows both joins
        assert.equal(await second.broadcast(name, 'srv', { n: 1 }), 'ok')
        await A.broadcasts.waitFor((p) => p.event === 'srv', 'server broadcast at A')
        await B.broadcasts.waitFor((p) => p.event === 'srv', 'server broadcast at B')
        assert.equal(A.broadcasts.filter((p) => p.event === 'srv').length, 1)

        await closeClient(a)
        await closeClient(b)
        await second.stop()
      })
    }
  })
}
