/**
 * Hostile input against a real peer (`peerverse start` as a child process). The attacker runs in
 * this process: libp2p nodes that open raw protocol streams and write what no honest peer would,
 * and raw TCP sockets. After each attack the peer must still be running and answering, the named
 * limit must have held (checked at its boundary where the wire lets us: a frame exactly at a limit
 * is taken, one byte more is refused), and honest peers must still be served.
 * Random bytes are seeded, so a failure replays.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { request, type IncomingHttpHeaders } from 'node:http'
import { connect, type Socket } from 'node:net'
import * as dagCbor from '@ipld/dag-cbor'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Connection, Stream } from '@libp2p/interface'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { MAX_API_BODY_BYTES } from '../../src/api/server.ts'
import { createPeerBinding, MAX_BINDING_BYTES, verifyPeerBinding } from '../../src/identity/binding.ts'
import { generateEd25519Key } from '../../src/identity/ed25519.ts'
import { signRecord } from '../../src/identity/record.ts'
import {
  DHT_MAX_MESSAGE_BYTES, GOSSIP_MAX_RPC_BYTES, INBOUND_CONNECTIONS_PER_SECOND_PER_HOST,
  INBOUND_UPGRADE_TIMEOUT_MS, MAX_CONNECTIONS, MAX_INCOMING_PENDING_CONNECTIONS, PROTOCOL_TIMEOUT_MS
} from '../../src/net/limits.ts'
import { createNetwork, DHT_PROTOCOL, GUARDED_PROTOCOLS, type Network } from '../../src/net/network.ts'
import { PEER_IDENTITY_PROTOCOL } from '../../src/net/peer-identity.ts'
import type { NodeStatus } from '../../src/node/node.ts'
import { PeerSet, waitFor, type CliPeer } from '../helpers/cli-peer.ts'
import { EventLog } from '../helpers/events.ts'
import { seeded } from '../helpers/random.ts'
import { cat, readVarint, utf8, varint } from '../helpers/bytes.ts'

/** kad-dht's own idle limit on an inbound stream (its `incomingMessageTimeout` default; we do not set it). */
const DHT_INCOMING_MESSAGE_TIMEOUT_MS = 10_000
const GOSSIP_PROTOCOLS = ['/meshsub/1.2.0', '/meshsub/1.1.0']
const TOPIC = 'peerverse/test/bad-input'
const RAW_FLOOD_SOCKETS = 400
const FLOOD_DIALS = 60
const GARBAGE_SOCKETS = 50
/** Growth of the target's RSS over the whole file that we call bounded (see the memory test). */
const RSS_GROWTH_BOUND = 200 * 1024 * 1024
/** The window of libp2p's inbound rate limiter (RateLimiter duration: 1 s, fixed windows). */
const RATE_WINDOW_MS = 1_000

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, Math.max(0, ms))) }

// ---------------------------------------------------------------- bytes

/** An unsigned-varint length-prefixed frame. */
const frame = (body: Uint8Array): Uint8Array => cat(varint(body.length), body)
/** A protobuf length-delimited field (`tag` already carries wire type 2). */
const pbField = (tag: number, body: Uint8Array): Uint8Array => cat(varint(tag), varint(body.length), body)

/** The largest `n` with `head + field(tag, n bytes)` fitting in `total` bytes. */
function padFor (total: number, head: number): number {
  let n = total - head - 2
  while (head + 1 + varint(n).length + n > total) n--
  return n
}

/** A kad-dht PING (type 5) whose key pads the message to exactly `total` bytes; kad-dht echoes a PING back. */
function dhtPing (total: number): Uint8Array {
  const head = Uint8Array.of(0x08, 0x05)
  const msg = cat(head, pbField(0x12, new Uint8Array(padFor(total, head.length))))
  assert.equal(msg.length, total)
  return msg
}

/** A kad-dht FIND_NODE (type 4) for a peer id. */
const dhtFindNode = (peerId: string): Uint8Array => cat(Uint8Array.of(0x08, 0x04), pbField(0x12, peerIdFromString(peerId).toMultihash().bytes))

/** A gossipsub RPC subscribing to `topic`, padded with an unknown field (decoders skip it) to exactly `total` bytes. */
function gossipSubscribe (topic: string, total: number): Uint8Array {
  const sub = pbField(0x0a, cat(Uint8Array.of(0x08, 0x01), pbField(0x12, utf8(topic))))
  const rpc = cat(sub, pbField(0x7a, new Uint8Array(padFor(total, sub.length))))
  assert.equal(rpc.length, total)
  return rpc
}

function includesBytes (haystack: Uint8Array, needle: Uint8Array): boolean {
  return Buffer.from(haystack.buffer, haystack.byteOffset, haystack.byteLength).includes(Buffer.from(needle))
}

// ---------------------------------------------------------------- streams

interface StreamOutcome {
  bytes: Uint8Array
  /** closed: the remote ended its side; reset: the remote reset the stream; waiting: neither by the deadline. */
  end: 'closed' | 'reset' | 'waiting'
  ms: number
}

/** Reads until the remote ends or resets the stream, `until` bytes arrived, or `timeoutMs` passed. */
async function readStream (stream: Stream, timeoutMs: number, until = Infinity): Promise<StreamOutcome> {
  const start = Date.now()
  const chunks: Uint8Array[] = []
  let n = 0
  let timer: ReturnType<typeof setTimeout> | undefined
  const deadline = new Promise<'deadline'>(resolve => { timer = setTimeout(() => { resolve('deadline') }, timeoutMs) })
  const it = stream[Symbol.asyncIterator]()
  const done = (end: StreamOutcome['end']): StreamOutcome => ({ bytes: cat(...chunks), end, ms: Date.now() - start })
  try {
    while (n < until) {
      const r = await Promise.race([it.next(), deadline])
      if (r === 'deadline') return done('waiting')
      if (r.done === true) return done('closed')
      const bytes = r.value.subarray()
      chunks.push(bytes)
      n += bytes.length
    }
    return done('waiting')
  } catch {
    return done('reset')
  } finally {
    clearTimeout(timer)
  }
}

/** Writes `bytes` in 64 KiB chunks with backpressure; stops early if the remote shuts the stream. Returns bytes written. */
async function sendAll (stream: Stream, bytes: Uint8Array): Promise<number> {
  const CHUNK = 64 * 1024
  let sent = 0
  try {
    while (sent < bytes.length) {
      if (stream.status !== 'open' || stream.writeStatus !== 'writable') break
      const chunk = bytes.subarray(sent, sent + CHUNK)
      sent += chunk.length
      if (!stream.send(chunk)) await stream.onDrain({ signal: AbortSignal.timeout(10_000) })
    }
  } catch {}
  return sent
}

// ---------------------------------------------------------------- the peers

const set = new PeerSet()
let target: CliPeer
let targetLog: EventLog
/** Honest CLI peers bootstrapping to the target, started once the identity attacks are over. */
let honestB: CliPeer
let honestC: CliPeer
let honestCLog: EventLog
let attacker: Network
const extraNodes: Network[] = []
const sockets: Socket[] = []
let rssBefore = 0
let heapBefore = 0

async function status (peer: CliPeer = target, timeoutMs = 10_000): Promise<NodeStatus> {
  return peer.api.request<NodeStatus>('GET', '/api/v0/status', undefined, { signal: AbortSignal.timeout(timeoutMs) })
}

/** The target process is still running and its API answers. */
async function assertUp (): Promise<NodeStatus> {
  assert.equal(target.proc.exitCode, null, `target exited: ${target.stderr()}`)
  assert.equal(target.proc.signalCode, null, `target killed: ${target.stderr()}`)
  const s = await status()
  assert.equal(s.peerId, target.ready.peerId)
  return s
}

async function newNode (listen: string[] = []): Promise<Network> {
  const node = await createNetwork({ privateKey: await generateKeyPair('Ed25519'), listen, relayServer: false, dhtMode: 'client' })
  extraNodes.push(node)
  await node.start()
  return node
}

/** The attacker's connection to the target (redialled if the target hung up, as gossip repair may). */
async function toTarget (): Promise<Connection> {
  return attacker.dial(multiaddr(target.addr), { signal: AbortSignal.timeout(10_000) })
}

async function openStream (protocol: string): Promise<Stream> {
  return (await toTarget()).newStream(protocol, { signal: AbortSignal.timeout(10_000) })
}

function tcpPort (addr: string): number {
  return Number(addr.split('/tcp/')[1].split('/')[0])
}

interface PeersResponse { peers: Array<{ peerId: string, did?: string }> }

async function didOf (peerId: string): Promise<string | undefined> {
  const { peers } = await target.api.request<PeersResponse>('GET', '/api/v0/peers')
  return peers.find(p => p.peerId === peerId)?.did
}

async function topicPeers (topic: string): Promise<string[]> {
  return (await target.api.request<{ peers: string[] }>('GET', `/api/v0/gossip/peers?topic=${encodeURIComponent(topic)}`)).peers
}

// ---------------------------------------------------------------- raw HTTP

interface RawResponse { status: number, headers: IncomingHttpHeaders, body: string }

/** One HTTP request with full control of the headers (fetch will not let a test set Host). */
async function rawHttp (path: string, init: { method?: string, headers?: Record<string, string>, body?: (write: (b: Uint8Array) => boolean) => void }): Promise<RawResponse> {
  const url = new URL(target.api.url)
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, path, method: init.method ?? 'GET', headers: init.headers, agent: false })
    let answered = false
    req.on('response', res => {
      answered = true
      let body = ''
      res.setEncoding('utf8')
      res.on('data', d => { body += d })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, headers: res.headers, body }) })
      res.on('error', reject)
    })
    req.on('upgrade', () => { reject(new Error('the server accepted the WebSocket upgrade')) })
    // The server may answer and close before it read all we wrote; only an error before the answer counts.
    req.on('error', err => { if (!answered) reject(err) })
    if (init.body != null) init.body(b => req.write(b))
    req.end()
  })
}

const bearer = (): Record<string, string> => ({ authorization: `Bearer ${target.api.token}`, host: new URL(target.api.url).host })

describe('a peer under bad input', { timeout: 240_000 }, () => {
  before(async () => {
    target = await set.start()
    targetLog = await EventLog.open(target)
    attacker = await newNode(['/ip4/127.0.0.1/tcp/0'])
    await toTarget()
    // Identify has run both ways once the attacker knows the target's protocols.
    await waitFor('attacker identified the target', async () =>
      (await attacker.peerStore.get(peerIdFromString(target.ready.peerId))).protocols.includes(DHT_PROTOCOL))
    const s = await status()
    rssBefore = s.memory.rss
    heapBefore = s.memory.heapUsed
  })

  after(async () => {
    targetLog?.close()
    honestCLog?.close()
    for (const s of sockets) s.destroy()
    await Promise.all(extraNodes.map(async n => { try { await n.stop() } catch {} }))
    await set.cleanup()
  })

  it('identity protocol: oversized, random and wrongly signed bindings are rejected and counted; honest peers still identify', async t => {
    const user = generateEd25519Key()
    const me = attacker.peerId.toString()
    const other = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
    const good = await createPeerBinding(user, me)
    const badSig = dagCbor.encode({ ...good.record, sig: good.record.sig.map((b, i) => i === 0 ? b ^ 1 : b) })
    const random = seeded(0x1d).bytes
    const cases: Array<{ name: string, bytes: Uint8Array, error: string }> = [
      // A prefix one past the cap (2-byte varint): refused on the length, before any body is read.
      { name: 'length prefix MAX_BINDING_BYTES + 1', bytes: cat(varint(MAX_BINDING_BYTES + 1), random(64)), error: 'InvalidDataLengthError' },
      // A prefix claiming a gigabyte: its varint alone is longer than any allowed length.
      { name: 'length prefix of 1 GB', bytes: cat(varint(1_000_000_000), random(64)), error: 'InvalidDataLengthLengthError' },
      { name: 'well-sized frame of random bytes', bytes: frame(random(300)), error: 'MalformedRecordError' },
      { name: 'signed record of another type', bytes: frame((await signRecord(user, 'peerverse/profile', { peerId: me, issued: Date.now() })).bytes), error: 'UnexpectedRecordTypeError' },
      { name: 'binding naming another peer id', bytes: frame((await createPeerBinding(user, other)).bytes), error: 'PeerBindingMismatchError' },
      { name: 'binding with a flipped signature bit', bytes: frame(badSig), error: 'InvalidSignatureError' }
    ]
    const base = (await assertUp()).rejected
    const seen = targetLog.events.length
    for (const [i, c] of cases.entries()) {
      const stream = await openStream(PEER_IDENTITY_PROTOCOL)
      const reply = readStream(stream, PROTOCOL_TIMEOUT_MS * 2)
      await sendAll(stream, c.bytes)
      const out = await reply
      // Refused on the spot (not by the protocol timeout), and the target's own binding never sent.
      assert.equal(out.end, 'reset', `${c.name}: stream ${out.end}`)
      assert.equal(out.bytes.length, 0, `${c.name}: target answered`)
      assert.ok(out.ms < PROTOCOL_TIMEOUT_MS, `${c.name}: took ${out.ms} ms`)
      await waitFor(`${c.name} counted`, async () => (await status()).rejected === base + i + 1, 10_000)
    }
    const rejections = targetLog.events.slice(seen).filter(e => e.type === 'peer:rejected')
    assert.deepEqual(rejections.map(e => String(e.error).split(':')[0]), cases.map(c => c.error))
    for (const e of rejections) {
      assert.equal(e.peerId, me)
      assert.equal(e.protocol, PEER_IDENTITY_PROTOCOL)
    }

    // Control: the same framing with a good binding is accepted, answered with the target's binding, not counted.
    const stream = await openStream(PEER_IDENTITY_PROTOCOL)
    const reply = readStream(stream, PROTOCOL_TIMEOUT_MS * 2)
    await sendAll(stream, frame(good.bytes))
    const out = await reply
    assert.equal(out.end, 'closed')
    const { value, length } = readVarint(out.bytes)
    assert.equal(out.bytes.length, length + value)
    assert.equal((await verifyPeerBinding(out.bytes.subarray(length), target.ready.peerId)).did, target.ready.did)
    await stream.close().catch(() => {})
    await waitFor('target knows the attacker\'s did', async () => (await didOf(me)) === good.record.author, 10_000)
    assert.equal((await assertUp()).rejected, base + cases.length)

    // Honest CLI peers bootstrapping to the target are identified (their did is known).
    ;[honestB, honestC] = await Promise.all([set.start({ bootstrap: [target.addr] }), set.start({ bootstrap: [target.addr] })])
    honestCLog = await EventLog.open(honestC)
    for (const p of [honestB, honestC]) {
      await waitFor(`target identifies ${p.ready.peerId}`, async () => (await didOf(p.ready.peerId)) === p.ready.did, 20_000)
    }
    assert.equal((await assertUp()).rejected, base + cases.length)
    t.diagnostic(`rejections: ${rejections.map(e => String(e.error).split(':')[0]).join(', ')}`)
  })

  it('DHT protocol: a frame one byte over DHT_MAX_MESSAGE_BYTES and garbage protobuf are refused; lookups still answered', async t => {
    // Control and boundary: kad-dht echoes a PING, small or exactly DHT_MAX_MESSAGE_BYTES long.
    for (const size of [16, DHT_MAX_MESSAGE_BYTES]) {
      const stream = await openStream(DHT_PROTOCOL)
      const msg = frame(dhtPing(size))
      const reply = readStream(stream, 15_000, msg.length)
      await sendAll(stream, msg)
      const out = await reply
      assert.equal(out.bytes.length, msg.length, `PING of ${size} bytes echoed (${out.end})`)
      stream.abort(new Error('done'))
    }

    // One byte over: the whole frame is sent, yet nothing comes back and the stream is reset at once
    // (not after the 10 s idle timeout).
    const over = await openStream(DHT_PROTOCOL)
    const overReply = readStream(over, DHT_INCOMING_MESSAGE_TIMEOUT_MS * 2)
    await sendAll(over, frame(dhtPing(DHT_MAX_MESSAGE_BYTES + 1)))
    const overOut = await overReply
    assert.equal(overOut.end, 'reset')
    assert.equal(overOut.bytes.length, 0)
    assert.ok(overOut.ms < DHT_INCOMING_MESSAGE_TIMEOUT_MS / 2, `over-limit frame reset after ${overOut.ms} ms`)

    // Garbage protobuf frames (seeded): each stream is reset without an answer, long before the idle timeout.
    const random = seeded(0xd47).bytes
    for (const size of [1, 7, 200, 4096]) {
      const stream = await openStream(DHT_PROTOCOL)
      const reply = readStream(stream, DHT_INCOMING_MESSAGE_TIMEOUT_MS * 2)
      await sendAll(stream, frame(random(size)))
      const out = await reply
      assert.equal(out.end, 'reset', `garbage of ${size} bytes: ${out.end}`)
      assert.equal(out.bytes.length, 0)
      assert.ok(out.ms < DHT_INCOMING_MESSAGE_TIMEOUT_MS / 2, `garbage of ${size} bytes reset after ${out.ms} ms`)
    }
    await assertUp()

    // The target still answers FIND_NODE (naming honest peer C) ...
    await waitFor('target answers FIND_NODE with C', async () => {
      const stream = await openStream(DHT_PROTOCOL)
      const reply = readStream(stream, 5_000)
      await sendAll(stream, frame(dhtFindNode(honestC.ready.peerId)))
      const out = await reply
      stream.abort(new Error('done'))
      return includesBytes(out.bytes, peerIdFromString(honestC.ready.peerId).toMultihash().bytes)
    }, 20_000)
    // ... and a DHT lookup from honest peer B finds C.
    const found = await waitFor('B finds C through the DHT', async () =>
      honestB.api.request<{ addresses: string[], from: string }>('GET', `/api/v0/dht/peer/${honestC.ready.peerId}`), 20_000)
    assert.ok(found.addresses.some(a => a.includes(`/tcp/${tcpPort(honestC.addr)}`)), found.addresses.join(', '))
    t.diagnostic(`over-limit DHT frame reset after ${overOut.ms} ms; B's lookup answered by ${found.from === target.ready.peerId ? 'the target' : found.from}`)
  })

  it('GossipSub: an RPC one byte over GOSSIP_MAX_RPC_BYTES is dropped, garbage is survived, honest gossip still flows', async t => {
    const offered = (await attacker.peerStore.get(peerIdFromString(target.ready.peerId))).protocols
    for (const p of GOSSIP_PROTOCOLS) assert.ok(offered.includes(p), `target offers ${p}`)
    const me = attacker.peerId.toString()

    for (const protocol of GOSSIP_PROTOCOLS) {
      const overTopic = `over ${protocol}`
      const atTopic = `at ${protocol}`
      // One byte over: the target refuses the frame on its length prefix and ends the stream.
      const over = await openStream(protocol)
      const overReply = readStream(over, 10_000)
      await sendAll(over, frame(gossipSubscribe(overTopic, GOSSIP_MAX_RPC_BYTES + 1)))
      const overOut = await overReply
      assert.notEqual(overOut.end, 'waiting', `${protocol}: over-limit stream left open`)
      // Exactly at the limit: the same RPC is read, so the target learns the subscription ...
      const at = await openStream(protocol)
      await sendAll(at, frame(gossipSubscribe(atTopic, GOSSIP_MAX_RPC_BYTES)))
      await waitFor(`${protocol}: at-limit subscription seen`, async () => (await topicPeers(atTopic)).includes(me), 10_000)
      // ... while the one sent first, one byte longer, was never decoded.
      assert.deepEqual(await topicPeers(overTopic), [])
    }

    // Garbage frames (seeded sizes and bytes) on a gossip stream.
    const random = seeded(0x6055).bytes
    const garbage = await openStream(GOSSIP_PROTOCOLS[0])
    for (const size of [1, 3, 64, 1000, 65_536, 300_000]) await sendAll(garbage, frame(random(size)))
    await sendAll(garbage, random(5000)) // and unframed bytes
    await assertUp()

    // Honest gossip still flows through the target: B publishes, C (and the target) receive it.
    for (const p of [target, honestB, honestC]) await p.api.request('POST', '/api/v0/gossip/subscribe', { topic: TOPIC })
    let n = 0
    await waitFor('B\'s gossip reaches C and the target', async () => {
      const text = `after the attacks ${n++}`
      await honestB.api.request('POST', '/api/v0/gossip/publish', { topic: TOPIC, data: text })
      await waitFor('delivery', () => honestCLog.gossip(TOPIC).length > 0 && targetLog.gossip(TOPIC).length > 0, 2_000, 100)
      return true
    }, 30_000)
    const msg = honestCLog.events.find(e => e.type === 'gossip:message' && e.topic === TOPIC)
    assert.equal(msg?.from, honestB.ready.peerId)
    assert.match(Buffer.from(String(msg?.data), 'base64').toString('utf8'), /^after the attacks \d+$/)
    await assertUp()
    t.diagnostic(`gossip delivered after ${n} publish(es)`)
  })

  it('garbage on the TCP port: 50 sockets of seeded random bytes are all closed by the peer', async t => {
    const random = seeded(0x7c9).bytes
    const port = tcpPort(target.addr)
    await sleep(RATE_WINDOW_MS + 100) // a fresh rate-limit window, so some sockets reach the upgrade
    const start = Date.now()
    const lifetimes = Array.from({ length: GARBAGE_SOCKETS }, (_, i) => {
      // Every tenth socket sends 1 MiB, the others up to 4 KiB.
      const size = i % 10 === 0 ? 1024 * 1024 : 1 + (random(2)[0] << 4)
      const bytes = random(size)
      const s = connect({ host: '127.0.0.1', port })
      sockets.push(s)
      const lifetime = { ms: -1 }
      s.on('connect', () => { s.write(bytes) })
      s.on('error', () => {})
      s.on('close', () => { lifetime.ms = Date.now() - start })
      return lifetime
    })
    await waitFor('target closed every garbage socket', () => lifetimes.every(l => l.ms >= 0), INBOUND_UPGRADE_TIMEOUT_MS + 10_000, 50)
    // Each is closed by the peer: refused at once, or read, found not to be multistream-select, and dropped,
    // at the latest by the inbound upgrade timeout. None is left open.
    const worst = Math.max(...lifetimes.map(l => l.ms))
    assert.ok(worst < INBOUND_UPGRADE_TIMEOUT_MS + 3_000, `slowest garbage socket closed after ${worst} ms`)
    await assertUp()
    // The attacker's own connection still works.
    await waitFor('ping after the garbage', async () => (await attacker.services.ping.ping(multiaddr(target.addr))) >= 0, 10_000)
    t.diagnostic(`garbage sockets closed after ${Math.min(...lifetimes.map(l => l.ms))}..${worst} ms`)
  })

  it('a connection flood from one address is turned away; the peer stays reachable after it', async t => {
    const port = tcpPort(target.addr)
    const targetMa = multiaddr(target.addr)

    // Watch the target throughout: it must answer, and never hold more than MAX_CONNECTIONS.
    let watching = true
    let maxConnections = 0
    let polls = 0
    let failedPolls = 0
    let slowestPoll = 0
    const watcher = (async () => {
      while (watching) {
        const t0 = Date.now()
        try {
          maxConnections = Math.max(maxConnections, (await status(target, 5_000)).connections.total)
          polls++
        } catch {
          failedPolls++
        }
        slowestPoll = Math.max(slowestPoll, Date.now() - t0)
        await new Promise(r => setTimeout(r, 200))
      }
    })()

    const dialers = await Promise.all(Array.from({ length: FLOOD_DIALS }, async () => newNode()))
    let heldRaw: Array<{ closedAfter: number }> = []
    let slowestRaw = 0
    let okA = 0
    let okB = 0
    let spanA = 0
    let spanB = 0
    let retried = 0
    try {
      // The rate limiter counts per host in fixed one-second windows; start in a fresh one, so the
      // earlier tests' sockets do not decide what this one sees.
      await sleep(RATE_WINDOW_MS + 100)

      // Phase A: 400 raw sockets at once, held open without a handshake, and a burst of 60 real dials
      // while they are held.
      const floodStart = Date.now()
      const raw = Array.from({ length: RAW_FLOOD_SOCKETS }, () => {
        const probe = { opened: Date.now(), connected: false, closedAfter: -1 }
        const s = connect({ host: '127.0.0.1', port })
        sockets.push(s)
        s.on('connect', () => { probe.connected = true })
        s.on('error', () => {})
        s.on('close', () => { probe.closedAfter = Date.now() - probe.opened })
        return probe
      })
      await waitFor('raw sockets connected', () => raw.every(p => p.connected || p.closedAfter >= 0), 10_000, 20)
      const dialsA = await Promise.allSettled(dialers.map(async d => d.dial(targetMa, { signal: AbortSignal.timeout(10_000) })))
      const lastAttemptA = Date.now()
      spanA = (lastAttemptA - floodStart) / 1000
      okA = dialsA.filter(r => r.status === 'fulfilled').length

      // The peer closes every raw socket itself: refused ones at once, accepted ones at the upgrade timeout.
      await waitFor('target closed every raw socket', () => raw.every(p => p.closedAfter >= 0), INBOUND_UPGRADE_TIMEOUT_MS + 10_000, 50)
      heldRaw = raw.filter(p => p.closedAfter >= INBOUND_UPGRADE_TIMEOUT_MS / 2)
      slowestRaw = Math.max(...raw.map(p => p.closedAfter))
      // A raw socket the connection manager accepted is a pending upgrade until it times out, so at most
      // MAX_INCOMING_PENDING_CONNECTIONS of them are held; every other one is refused on arrival.
      assert.ok(heldRaw.length >= 1, 'no raw socket reached the upgrade (the flood never met the pending limit)')
      assert.ok(heldRaw.length <= MAX_INCOMING_PENDING_CONNECTIONS, `${heldRaw.length} raw sockets held`)
      assert.ok(slowestRaw < INBOUND_UPGRADE_TIMEOUT_MS + 3_000, `a raw socket stayed open ${slowestRaw} ms`)
      // Accepted inbound connections per host are capped per one-second window of the rate limiter; a
      // burst spanning T seconds touches at most floor(T) + 1 windows (from the first raw socket to the last dial).
      assert.ok(heldRaw.length + okA <= INBOUND_CONNECTIONS_PER_SECOND_PER_HOST * (Math.floor(spanA) + 1), `${heldRaw.length} + ${okA} accepted in ${spanA} s`)

      // Phase B: the raw sockets are gone; the dialers that were refused try again, all at once, in a
      // fresh rate-limit window.
      await sleep(lastAttemptA + RATE_WINDOW_MS + 100 - Date.now())
      const retry = dialers.filter((_, i) => dialsA[i].status === 'rejected')
      retried = retry.length
      const burstB = Date.now()
      const dialsB = await Promise.allSettled(retry.map(async d => d.dial(targetMa, { signal: AbortSignal.timeout(10_000) })))
      spanB = (Date.now() - burstB) / 1000
      okB = dialsB.filter(r => r.status === 'fulfilled').length
      const held = (await status()).connections.total
      maxConnections = Math.max(maxConnections, held)
      assert.ok(held >= okB, `target holds ${held} connections after accepting ${okB}`)
      assert.ok(okB >= 1, 'no dial got through once the raw flood was over')
      assert.ok(okB <= INBOUND_CONNECTIONS_PER_SECOND_PER_HOST * (Math.floor(spanB) + 1), `${okB} of ${retry.length} dials accepted in ${spanB} s`)
      assert.ok(okB < retry.length, 'the rate limiter turned none of the burst away')
    } finally {
      watching = false
      await watcher
    }
    assert.ok(maxConnections <= MAX_CONNECTIONS, `${maxConnections} connections`)
    assert.ok(polls > 0)
    assert.equal(failedPolls, 0, `${failedPolls} status polls went unanswered (slowest ${slowestPoll} ms)`)
    await assertUp()

    // After the flood, a fresh honest peer connects and is served.
    await Promise.all(dialers.map(async d => d.stop()))
    const honest = await newNode()
    const rtt = await waitFor('an honest peer connects after the flood', async () => {
      await honest.dial(targetMa, { signal: AbortSignal.timeout(5_000) })
      return (await honest.services.ping.ping(targetMa, { signal: AbortSignal.timeout(5_000) })) + 1
    }, 20_000)
    assert.ok(rtt > 0)
    await honest.stop()
    t.diagnostic(`raw flood: ${RAW_FLOOD_SOCKETS - heldRaw.length} refused at once, ${heldRaw.length} held until the upgrade timeout (slowest closed after ${slowestRaw} ms)`)
    t.diagnostic(`dials: ${okA}/${FLOOD_DIALS} during the raw flood (${spanA.toFixed(2)} s), ${okB}/${retried} after it (${spanB.toFixed(2)} s)`)
    t.diagnostic(`status polls: ${polls}, slowest ${slowestPoll} ms, max connections ${maxConnections}`)
  })

  it('local API: oversized bodies, missing token, foreign Host or Origin and token-less WebSocket are refused', async t => {
    const path = '/api/v0/gossip/publish'
    const json = { 'content-type': 'application/json' }
    // Control: a well-formed request passes.
    const ok = await rawHttp('/api/v0/status', { headers: bearer() })
    assert.equal(ok.status, 200)

    // A declared body over the limit is refused before it is read.
    const declared = await rawHttp(path, {
      method: 'POST',
      headers: { ...bearer(), ...json, 'content-length': String(MAX_API_BODY_BYTES + 1) },
      body: write => { write(new Uint8Array(1024)) }
    })
    assert.equal(declared.status, 413)
    assert.equal(JSON.parse(declared.body).error, 'BodyTooLarge')
    // A chunked body with no length is cut off once it passes the limit.
    const chunked = await rawHttp(path, {
      method: 'POST',
      headers: { ...bearer(), ...json, 'transfer-encoding': 'chunked' },
      body: write => { for (let n = 0; n <= MAX_API_BODY_BYTES; n += 64 * 1024) write(new Uint8Array(64 * 1024).fill(0x20)) }
    })
    assert.equal(chunked.status, 413)

    const { host } = bearer()
    assert.equal((await rawHttp('/api/v0/status', { headers: { host } })).status, 401)
    assert.equal((await rawHttp('/api/v0/status', { headers: { host, authorization: 'Bearer not-the-token' } })).status, 401)
    assert.equal((await rawHttp('/api/v0/status', { headers: { ...bearer(), host: 'evil.example:1234' } })).status, 403)
    assert.equal((await rawHttp('/api/v0/status', { headers: { ...bearer(), origin: 'http://evil.example' } })).status, 403)
    assert.equal((await rawHttp('/api/v0/status', { headers: { ...bearer(), origin: `https://${host}` } })).status, 403)

    // WebSocket upgrade without the token: answered with 401, never switched.
    const upgrade = { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': Buffer.from(seeded(0x3e).bytes(16)).toString('base64') }
    assert.equal((await rawHttp('/api/v0/events', { headers: { host, ...upgrade } })).status, 401)
    assert.equal((await rawHttp(`/api/v0/events?token=${encodeURIComponent(target.api.token)}`, { headers: { host: 'evil.example:1234', ...upgrade } })).status, 403)
    const opened = await new Promise<boolean>(resolve => {
      const ws = new WebSocket(`${target.api.url.replace(/^http/, 'ws')}/api/v0/events`)
      ws.addEventListener('open', () => { ws.close(); resolve(true) })
      ws.addEventListener('error', () => { resolve(false) })
    })
    assert.equal(opened, false)
    await assertUp()
    t.diagnostic('413 (declared and chunked), 401, 403 (Host, Origin) and a refused WebSocket, as expected')
  })

  it('memory stays bounded across all of the above', async t => {
    // Let the flood's state go: the dialers are stopped, so the target should be back to its few honest
    // connections (attacker, B, C and their redials).
    await waitFor('connections drop back', async () => (await status()).connections.total <= 6, 30_000)
    const s = await assertUp()
    const growth = s.memory.rss - rssBefore
    // The bound: the attacks pushed ~4 MiB DHT frames (one echoed back), 1 MiB gossip RPCs, 1 MiB TCP
    // garbage and ~460 connection attempts through a peer that starts near 150 MiB RSS. V8 keeps freed
    // heap pages, so RSS records the high-water mark, not a leak; a few tens of MiB is normal. 200 MiB is
    // what a real failure would cross: buffering whole oversized frames per stream, or keeping
    // per-connection state for the flood (400 sockets x 1 MiB would be 400 MiB).
    t.diagnostic(`rss ${(rssBefore / 2 ** 20).toFixed(1)} -> ${(s.memory.rss / 2 ** 20).toFixed(1)} MiB, heapUsed ${(heapBefore / 2 ** 20).toFixed(1)} -> ${(s.memory.heapUsed / 2 ** 20).toFixed(1)} MiB`)
    assert.ok(growth < RSS_GROWTH_BOUND, `rss grew ${(growth / 2 ** 20).toFixed(1)} MiB`)
  })

  // @libp2p/utils' lpStream read the length prefix one byte at a time and, while the varint did not
  // end, kept reading without applying maxLengthLength; 2 MiB of 0x80 froze the peer for over 10 s.
  // Our protocols read through src/net/framed.ts, which bounds the prefix; the libraries' protocols
  // (DHT, identify, relay, AutoNAT, DCUtR) are bounded by the prefix guard. These tests go past both.
  it('every guarded library protocol: a length prefix that never ends ends the stream at once', async () => {
    for (const [protocol] of GUARDED_PROTOCOLS) {
      let stream: Stream
      try {
        stream = await openStream(protocol)
      } catch (err) {
        // Only the protocols the target speaks can be tried (it runs no relay transport's stop side for us).
        if ((err as Error).name === 'UnsupportedProtocolError') continue
        throw err
      }
      const reply = readStream(stream, PROTOCOL_TIMEOUT_MS * 2)
      await sendAll(stream, new Uint8Array(64).fill(0x80))
      const out = await reply
      // Reset by the guard; identify's responder may have sent its answer and closed first (it reads nothing).
      assert.notEqual(out.end, 'waiting', `${protocol}: the stream is still open`)
      assert.ok(out.ms < PROTOCOL_TIMEOUT_MS, `${protocol}: ended on the bad prefix, not by a timeout`)
    }
    await assertUp()
  })

  it('identity protocol: a length prefix that never ends is rejected at once', async () => {
    const base = (await status()).rejected
    const stream = await openStream(PEER_IDENTITY_PROTOCOL)
    const reply = readStream(stream, PROTOCOL_TIMEOUT_MS * 2)
    await sendAll(stream, new Uint8Array(64).fill(0x80))
    await waitFor('unterminated prefix counted', async () => (await status()).rejected === base + 1)
    const out = await reply
    assert.equal(out.end, 'reset')
    assert.ok(out.ms < PROTOCOL_TIMEOUT_MS, 'reset on the bad prefix, not by the protocol timeout')
  })
})
