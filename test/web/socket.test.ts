// The client's reconnecting WebSocket (web/src/socket.ts), the one the event stream and the voice
// and video sockets use, against a real WebSocket server on 127.0.0.1 (Node's WebSocket is the
// WHATWG one the browser has).
import { strict as assert } from 'node:assert'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { describe, it } from 'node:test'
import { WebSocketServer, type WebSocket as ServerSocket } from 'ws'
import { RECONNECT_MAX_MS, RECONNECT_MIN_MS, ReconnectingSocket, SOCKET_CLOSE_LEFT_SPACE, type SocketClose } from '../../web/src/socket.ts'

/** A server that hands each connection to the test in order. */
async function server (t: { after: (fn: () => Promise<void>) => void }): Promise<{ url: string, next: () => Promise<ServerSocket>, connections: () => number }> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 })
  await once(wss, 'listening')
  const queue: ServerSocket[] = []
  const waiting: Array<(s: ServerSocket) => void> = []
  let count = 0
  wss.on('connection', s => {
    count++
    const w = waiting.shift()
    if (w != null) w(s)
    else queue.push(s)
  })
  t.after(async () => {
    for (const c of wss.clients) c.terminate()
    await new Promise<void>(resolve => { wss.close(() => { resolve() }) })
  })
  return {
    url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`,
    next: async () => queue.shift() ?? await new Promise<ServerSocket>(resolve => { waiting.push(resolve) }),
    connections: () => count
  }
}

/** Records what the socket reports, and resolves waits on it. */
function recorder (): { events: string[], texts: string[], binaries: number[], closes: SocketClose[], until: (pred: () => boolean) => Promise<void>, handlers: ConstructorParameters<typeof ReconnectingSocket>[1] } {
  const events: string[] = []
  const texts: string[] = []
  const binaries: number[] = []
  const closes: SocketClose[] = []
  let waiters: Array<() => void> = []
  const poke = (): void => { const w = waiters; waiters = []; for (const f of w) f() }
  return {
    events,
    texts,
    binaries,
    closes,
    until: async pred => { while (!pred()) await new Promise<void>(resolve => { waiters.push(resolve) }) },
    handlers: {
      onConnecting: attempt => { events.push(`connecting ${attempt}`); poke() },
      onOpen: () => { events.push('open'); poke() },
      onText: d => { texts.push(d); poke() },
      onMessage: d => { binaries.push(d.byteLength); poke() },
      onClose: d => { closes.push(d); events.push(`closed ${d.code ?? ''} ${d.retryInMs == null ? 'final' : 'retry'}`); poke() }
    }
  }
}

describe('the client\'s reconnecting socket', () => {
  it('delivers text and binary messages, sends while open, and reconnects with growing backoff after the server drops it', async t => {
    const srv = await server(t)
    const r = recorder()
    const sock = new ReconnectingSocket(() => srv.url, r.handlers, { finalCodes: [] })
    t.after(() => { sock.stop() })
    assert.equal(sock.send('early'), false, 'nothing is sent before the socket opens')
    sock.start()
    const first = await srv.next()
    await r.until(() => r.events.includes('open'))
    first.send('hello')
    first.send(new Uint8Array(5))
    await r.until(() => r.texts.length === 1 && r.binaries.length === 1)
    assert.deepEqual(r.texts, ['hello'])
    assert.deepEqual(r.binaries, [5])
    const got = once(first, 'message')
    assert.equal(sock.send('up'), true)
    assert.equal(String((await got)[0]), 'up')

    // Dropped twice without a successful open in between: the waits grow.
    first.close(1011, 'going')
    const second = await srv.next()
    await r.until(() => r.events.filter(e => e === 'open').length === 2)
    second.terminate()
    await srv.next()
    await r.until(() => r.events.filter(e => e === 'open').length === 3)
    const waits = r.closes.map(c => c.retryInMs as number)
    assert.equal(waits.length, 2)
    for (const w of waits) assert.ok(w >= RECONNECT_MIN_MS / 2 && w <= RECONNECT_MIN_MS, `first retry after ${w} ms, within [${RECONNECT_MIN_MS / 2}, ${RECONNECT_MIN_MS}]`)
    assert.equal(r.closes[0]?.code, 1011)
    assert.equal(r.closes[0]?.attempt, 1)
    assert.ok(RECONNECT_MAX_MS >= RECONNECT_MIN_MS)
  })

  it('does not reconnect after a final close code, nor after stop', async t => {
    const srv = await server(t)
    const r = recorder()
    const sock = new ReconnectingSocket(() => srv.url, r.handlers)
    t.after(() => { sock.stop() })
    sock.start()
    const s = await srv.next()
    await r.until(() => r.events.includes('open'))
    s.close(SOCKET_CLOSE_LEFT_SPACE, 'left the space')
    await r.until(() => r.closes.length === 1)
    assert.equal(r.closes[0]?.code, SOCKET_CLOSE_LEFT_SPACE)
    assert.equal(r.closes[0]?.retryInMs, undefined, 'a final close is not retried')
    assert.equal(sock.ws, undefined)

    // Started again, then stopped: the server sees the close and no new connection follows.
    sock.start()
    const again = await srv.next()
    await r.until(() => r.events.filter(e => e === 'open').length === 2)
    const closed = once(again, 'close')
    sock.stop()
    await closed
    // A retry would come within RECONNECT_MIN_MS of the close: an absence can only be seen by
    // waiting that long.
    await new Promise(resolve => setTimeout(resolve, RECONNECT_MIN_MS * 2))
    assert.equal(srv.connections(), 2, 'the stopped socket did not connect again')
    assert.equal(r.events.filter(e => e.startsWith('connecting')).length, 2)
  })
})
