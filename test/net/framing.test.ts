/**
 * Length-prefixed frames (framed.ts), the request/response helper (rpc.ts) and the prefix guard
 * for libraries' protocols (prefix-guard.ts), over two real libp2p peers on loopback: every bound
 * is gone past, and a length prefix that never ends is refused at its first superfluous byte.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Stream } from '@libp2p/interface'
import { Uint8ArrayList } from 'uint8arraylist'
import { encodeVarint, framed, InvalidDataLengthLengthError, varintLength } from '../../src/net/framed.ts'
import { libp2pProtocols } from '../../src/net/libp2p-ports.ts'
import { DHT_MAX_MESSAGE_BYTES, PROTOCOL_TIMEOUT_MS } from '../../src/net/limits.ts'
import { createNetwork, DHT_PROTOCOL, GUARDED_PROTOCOLS, type Network } from '../../src/net/network.ts'
import { PrefixTracker } from '../../src/net/prefix-guard.ts'
import type { ProtocolPort, RemotePeer } from '../../src/net/ports.ts'
import { request, serve } from '../../src/net/rpc.ts'

const TEST_PROTOCOL = '/peerverse/test-frames/1.0.0'
const MAX = 1000

describe('PrefixTracker', () => {
  it('follows frames split anywhere and refuses a prefix longer than the largest frame needs', () => {
    const frames = [new Uint8Array(0), new Uint8Array(5).fill(7), new Uint8Array(300).fill(9)]
    const bytes = Uint8Array.from(frames.flatMap(f => [...encodeVarint(f.length), ...f]))
    for (const cut of [1, 2, 3, 7, 100, bytes.length]) {
      const t = new PrefixTracker(MAX)
      for (let i = 0; i < bytes.length; i += cut) t.feed(bytes.subarray(i, i + cut))
    }
    // MAX needs 2 bytes of prefix: the second continuation byte is one too many.
    assert.equal(varintLength(MAX), 2)
    const t = new PrefixTracker(MAX)
    t.feed(Uint8Array.of(0x80))
    assert.throws(() => { t.feed(Uint8Array.of(0x80)) }, (e: Error) => e instanceof InvalidDataLengthLengthError)
    // A list of buffers (what Yamux hands over) is read in place, across its buffers.
    assert.throws(() => { new PrefixTracker(MAX).feed(new Uint8ArrayList(Uint8Array.of(0x80), Uint8Array.of(0x80))) }, { name: 'InvalidDataLengthLengthError' })
    new PrefixTracker(MAX).feed(new Uint8ArrayList(Uint8Array.of(0x82), Uint8Array.of(0x01, 7), new Uint8Array(129)))
    // 4 MiB needs 4 bytes: three continuation bytes pass, the fourth is refused.
    const d = new PrefixTracker(DHT_MAX_MESSAGE_BYTES)
    d.feed(new Uint8Array(3).fill(0xff))
    assert.throws(() => { d.feed(Uint8Array.of(0x80)) }, { name: 'InvalidDataLengthLengthError' })
  })

  it('follows only the first frames when told so: the bytes after them are not framed (a relayed connection)', () => {
    const t = new PrefixTracker(MAX, 1)
    // One 3-byte frame, then what a relayed Noise handshake could look like: bytes >= 0x80 in a row.
    t.feed(Uint8Array.of(3, 1, 2))
    assert.equal(t.done, false)
    t.feed(Uint8Array.of(3, 0x80, 0x80, 0x80, 0x80))
    assert.equal(t.done, true)
    t.feed(new Uint8Array(64).fill(0x80))
    // Within the first frames the bound still holds.
    const u = new PrefixTracker(MAX, 1)
    assert.throws(() => { u.feed(new Uint8Array(3).fill(0x80)) }, { name: 'InvalidDataLengthLengthError' })
  })
})

describe('framed streams and request/response over libp2p', () => {
  let a: Network
  let b: Network
  let pa: ProtocolPort
  let pb: ProtocolPort
  const served: Array<{ peer: string, error: string }> = []
  /** Streams the test handler received, each with the outcome of reading it. */
  const inbound: Array<Promise<string>> = []

  before(async () => {
    a = await createNetwork({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'], relayServer: false })
    b = await createNetwork({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'], relayServer: false })
    await a.start()
    await b.start()
    pa = libp2pProtocols(a)
    pb = libp2pProtocols(b)
    // An echo service: the answer is the request, three times, in separate frames.
    await pb.handle('/peerverse/test-echo/1.0.0', serve({ protocol: '/peerverse/test-echo/1.0.0', maxRequestBytes: MAX, onRejected: (peer, _p, err) => { served.push({ peer, error: err.name }) } }, async (req, x) => {
      await x.out.writeMany([req, req, req], { signal: x.signal })
    }), { maxInboundStreams: 8, maxOutboundStreams: 8 })
    await pb.handle(TEST_PROTOCOL, (stream: Stream, _remote: RemotePeer) => {
      inbound.push((async () => {
        const f = framed(stream, { maxFrameBytes: MAX })
        try {
          const got: number[] = []
          for await (const frame of f.frames({ signal: AbortSignal.timeout(PROTOCOL_TIMEOUT_MS) })) got.push(frame.length)
          return `ok ${got.join(',')}`
        } catch (err) {
          stream.abort(err as Error)
          return (err as Error).name
        }
      })())
    }, { maxInboundStreams: 8, maxOutboundStreams: 8 })
    await a.dial(b.getMultiaddrs()[0])
  })

  after(async () => {
    await a?.stop()
    await b?.stop()
  })

  async function send (bytes: Uint8Array): Promise<{ outcome: string, ms: number }> {
    const before = inbound.length
    const stream = await pa.dial(b.peerId.toString(), TEST_PROTOCOL)
    const start = Date.now()
    stream.send(bytes)
    await stream.close().catch(() => {})
    while (inbound.length === before) await new Promise(resolve => setImmediate(resolve))
    const outcome = await inbound[before]
    return { outcome, ms: Date.now() - start }
  }

  it('frames up to the bound arrive whole, in order, and a clean close ends them', async () => {
    const frames = [new Uint8Array(0), new Uint8Array(1), new Uint8Array(MAX)]
    const { outcome } = await send(Uint8Array.from(frames.flatMap(f => [...encodeVarint(f.length), ...f])))
    assert.equal(outcome, 'ok 0,1,1000')
  })

  it('a frame one byte over the bound is refused with InvalidDataLengthError', async () => {
    const { outcome } = await send(Uint8Array.from([...encodeVarint(MAX + 1), ...new Uint8Array(MAX + 1)]))
    assert.equal(outcome, 'InvalidDataLengthError')
  })

  it('a length prefix that never ends is refused at once, not by the deadline', async () => {
    const { outcome, ms } = await send(new Uint8Array(64 * 1024).fill(0x80))
    assert.equal(outcome, 'InvalidDataLengthLengthError')
    assert.ok(ms < PROTOCOL_TIMEOUT_MS, `refused after ${ms} ms`)
  })

  it('a stream that ends inside a frame gives UnexpectedEOFError', async () => {
    const { outcome } = await send(Uint8Array.from([...encodeVarint(10), 1, 2, 3]))
    assert.equal(outcome, 'UnexpectedEOFError')
  })

  it('request() gets every answer frame; serve() reports an oversized request as a violation', async () => {
    const got: number[] = []
    await request(pa, b.peerId.toString(), '/peerverse/test-echo/1.0.0', new Uint8Array(10), f => { got.push(f.length); return true }, { maxFrameBytes: MAX })
    assert.deepEqual(got, [10, 10, 10])
    // onFrame returning false stops reading early.
    let n = 0
    await request(pa, b.peerId.toString(), '/peerverse/test-echo/1.0.0', new Uint8Array(3), () => { n++; return false }, { maxFrameBytes: MAX })
    assert.equal(n, 1)
    await assert.rejects(request(pa, b.peerId.toString(), '/peerverse/test-echo/1.0.0', new Uint8Array(MAX + 1), () => true, { maxFrameBytes: MAX }))
    while (served.length === 0) await new Promise(resolve => setImmediate(resolve))
    assert.deepEqual(served, [{ peer: a.peerId.toString(), error: 'InvalidDataLengthError' }])
  })

  it('the prefix guard resets a DHT stream whose length prefix never ends', async () => {
    assert.ok(GUARDED_PROTOCOLS.some(([p]) => p === DHT_PROTOCOL))
    const stream = await pa.dial(b.peerId.toString(), DHT_PROTOCOL)
    const start = Date.now()
    const ended = new Promise<string>(resolve => {
      stream.addEventListener('close', evt => { resolve((evt as unknown as { error?: Error }).error != null ? 'reset' : 'closed') })
    })
    stream.send(new Uint8Array(64 * 1024).fill(0x80))
    let timer: ReturnType<typeof setTimeout> | undefined
    const outcome = await Promise.race([ended, new Promise<string>(resolve => { timer = setTimeout(() => { resolve('waiting') }, PROTOCOL_TIMEOUT_MS * 2) })])
    clearTimeout(timer)
    assert.equal(outcome, 'reset')
    assert.ok(Date.now() - start < PROTOCOL_TIMEOUT_MS, 'reset on the bad prefix, not by a timeout')
    // The DHT still answers honest queries afterwards: the peers stay connected.
    assert.ok(a.getConnections(b.peerId).length > 0)
  })

  it('a protocol with a middleware runs its handler once per inbound stream', async () => {
    const protocol = '/peerverse/test-middleware/1.0.0'
    let calls = 0
    let passed = 0
    b.use(protocol, (stream, connection, next) => { passed++; next(stream, connection) })
    await pb.handle(protocol, serve({ protocol, maxRequestBytes: 16 }, async (_req, x) => {
      calls++
      await x.out.write(Uint8Array.of(calls), { signal: x.signal })
    }), { maxInboundStreams: 8, maxOutboundStreams: 8 })
    for (let i = 0; i < 3; i++) {
      // The handler answers once; a second run on the same stream would answer again.
      const got: number[] = []
      await request(pa, b.peerId.toString(), protocol, new Uint8Array(1), f => { got.push(...f); return true }, { maxFrameBytes: 16 })
      assert.deepEqual(got, [i + 1])
    }
    assert.equal(passed, 3)
    assert.equal(calls, 3)
    await pb.unhandle(protocol)
    b.unuse(protocol)
  })
})
