/**
 * The swarm protocol's limits against a real node on 127.0.0.1. The node holds a file; this process
 * speaks `/peerverse/swarm/1.0.0` to it from other libp2p peers, frame by frame, and goes past each
 * limit of the holder side (requests in flight, request frame size, OPEN first and in time, message
 * types, request rate, sessions per connection). Each time the node must reset the stream, emit
 * 'peer:rejected' naming the error, and go on serving an honest peer. Then the node downloads from
 * scripted holders that lie (wrong bytes, an unrequested block, an oversized frame): it must reject
 * and disconnect them, and still fetch the file from an honest holder afterwards.
 */
import { describe, it, before, after, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { MessageStreamStatus, Stream } from '@libp2p/interface'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import * as lp from 'it-length-prefixed'
import type { CID } from 'multiformats/cid'
import { MAX_BLOCK_BYTES } from '../../src/content/blockstore.ts'
import {
  MAX_BLOCKS_IN_FLIGHT_PER_PEER, MAX_REQUEST_FRAME_BYTES, MAX_SESSIONS_PER_CONNECTION, REQUEST_BURST,
  REQUESTS_PER_PEER_PER_SECOND, SESSION_OPEN_TIMEOUT_MS
} from '../../src/content/swarm.ts'
import { decodeMessage, encodeMessage, MAX_FRAME_BYTES, SWARM_PROTOCOL, type SwarmMessage } from '../../src/content/swarm-wire.ts'
import { CHUNK_SIZE, importFile, rawBlock, type Block } from '../../src/content/unixfs.ts'
import { createNetwork, type Network } from '../../src/net/network.ts'
import { createNode, type PeerverseNode, type RejectedEvent } from '../../src/node/node.ts'
import { defaultConfig, mergeConfig } from '../../src/node/config.ts'
import { seededBytes } from '../helpers/random.ts'
import { cat, toHex, utf8, varint } from '../helpers/bytes.ts'

/** How long any single step may take before the test fails instead of hanging. */
const STEP_MS = 10_000

// ---------------------------------------------------------------- bytes and files

const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength))

/** A length-prefixed frame around raw bytes, or around an encoded message. */
const rawFrame = (body: Uint8Array): Uint8Array => cat(varint(body.length), body)
const frame = (msg: SwarmMessage): Uint8Array => rawFrame(encodeMessage(msg).subarray())

/** A file imported in memory: its root, its leaves in order and every block by CID. */
interface TestFile {
  data: Uint8Array
  root: CID
  leaves: Block[]
  blocks: Map<string, Uint8Array>
}

async function makeFile (size: number, seed: number): Promise<TestFile> {
  const data = seededBytes(size, seed)
  const all: Block[] = []
  const { cid } = await importFile([data], async b => { all.push(b) })
  return { data, root: cid, leaves: all.filter(b => b.cid.code === 0x55), blocks: new Map(all.map(b => [b.cid.toString(), b.bytes])) }
}

// ---------------------------------------------------------------- speaking the protocol

/** One swarm session from a test peer: whole frames out, decoded messages in. */
class Wire {
  readonly stream: Stream
  /** The incoming frames, undecoded (next() decodes them with a deadline). */
  readonly frames: AsyncIterator<{ subarray: () => Uint8Array }>

  constructor (stream: Stream) {
    this.stream = stream
    this.frames = lp.decode(stream, { maxDataLength: MAX_FRAME_BYTES })[Symbol.asyncIterator]()
  }

  /** Sessions a test opened, aborted after it if still open, so a failed test leaves none behind. */
  static readonly live = new Set<Wire>()

  static async open (from: Network, to: Multiaddr, options: { outliveTest?: boolean } = {}): Promise<Wire> {
    const w = new Wire(await from.dialProtocol(to, SWARM_PROTOCOL, { signal: AbortSignal.timeout(STEP_MS) }))
    if (options.outliveTest !== true) Wire.live.add(w)
    return w
  }

  /** Sends messages in one write, so they reach the holder together. */
  send (...msgs: SwarmMessage[]): void {
    this.sendRaw(cat(...msgs.map(frame)))
  }

  sendRaw (bytes: Uint8Array): void {
    this.stream.send(bytes)
  }

  /** The next message; throws if the stream ends, is reset, or nothing comes in time. */
  async next (timeoutMs = STEP_MS): Promise<SwarmMessage> {
    let timer: ReturnType<typeof setTimeout> | undefined
    try {
      const r = await Promise.race([
        this.frames.next(),
        new Promise<never>((_resolve, reject) => { timer = setTimeout(() => { reject(new Error(`no message in ${timeoutMs} ms`)) }, timeoutMs) })
      ])
      if (r.done === true) throw new Error('stream ended')
      return decodeMessage(r.value.subarray())
    } finally {
      clearTimeout(timer)
    }
  }

  /** Waits until the stream is closed or reset (its 'close' event), or the deadline. */
  async closed (timeoutMs = STEP_MS): Promise<MessageStreamStatus | 'still open'> {
    const done = (): boolean => ['closed', 'reset', 'aborted'].includes(this.stream.status)
    if (done()) return this.stream.status
    await new Promise<void>(resolve => {
      const timer = setTimeout(() => { resolve() }, timeoutMs)
      this.stream.addEventListener('close', () => { clearTimeout(timer); resolve() }, { once: true })
    })
    return done() ? this.stream.status : 'still open'
  }
}


/** A message as plain data (CIDs and bytes as strings), for deepEqual. */
function plain (m: SwarmMessage): Record<string, unknown> {
  switch (m.type) {
    case 'open': return { type: m.type, root: m.root.toString() }
    case 'want': case 'dont-have': case 'cancel': return { type: m.type, cid: m.cid.toString() }
    case 'block': return { type: m.type, cid: m.cid.toString(), bytes: toHex(m.bytes) }
    case 'have': return { type: m.type, index: m.index }
    case 'bitfield': return { type: m.type, status: m.status, leaves: m.leaves, bits: toHex(m.bits) }
  }
}

function assertBlock (msg: SwarmMessage, file: TestFile, cid: CID, what: string): void {
  assert.equal(msg.type, 'block', `${what}: got ${msg.type}`)
  if (msg.type !== 'block') return
  assert.equal(msg.cid.toString(), cid.toString(), what)
  assert.ok(sameBytes(msg.bytes, file.blocks.get(cid.toString()) as Uint8Array), `${what}: wrong bytes`)
}

// ---------------------------------------------------------------- the peers

let dataDir: string
let node: PeerverseNode
let nodeAddr: Multiaddr
/** The file the node holds. */
let held: TestFile
/** A file the node does not hold; the scripted holders serve it. */
let remote: TestFile
/** Speaks the protocol badly, on purpose. */
let attacker: Network
/** Only ever speaks it well. */
let honest: Network
let flooder: Network
/** Opens a session and says nothing, from the start of the suite; and a second that opens properly. */
let sleeper: Network
let sleeperWire: Wire
let keeperWire: Wire
let sleeperOpenedAt: number
let sleeperVerdict: Promise<Verdict>
const peers: Network[] = []
/** Every 'peer:rejected' the node emitted, in order. */
const rejections: RejectedEvent[] = []
const rejectionsOf = (peer: Network): RejectedEvent[] => rejections.filter(r => r.peerId === peer.peerId.toString())

interface Verdict extends RejectedEvent {
  at: number
}

/** The node's next 'peer:rejected' naming `peer` (listen before the bad input is sent). */
function verdict (peer: Network, timeoutMs = STEP_MS): Promise<Verdict> {
  const id = peer.peerId.toString()
  const p = new Promise<Verdict>((resolve, reject) => {
    const onRejected = (evt: CustomEvent<RejectedEvent>): void => {
      if (evt.detail.peerId !== id) return
      clearTimeout(timer)
      node.removeEventListener('peer:rejected', onRejected)
      resolve({ ...evt.detail, at: Date.now() })
    }
    const timer = setTimeout(() => {
      node.removeEventListener('peer:rejected', onRejected)
      reject(new Error(`no peer:rejected for ${id} in ${timeoutMs} ms`))
    }, timeoutMs)
    node.addEventListener('peer:rejected', onRejected)
  })
  // A test that fails before awaiting it must not also leave an unhandled rejection.
  p.catch(() => {})
  return p
}

/** The node's next 'peer:disconnect' for `peer`. */
function disconnected (peer: Network, timeoutMs = STEP_MS): Promise<void> {
  const id = peer.peerId.toString()
  const p = new Promise<void>((resolve, reject) => {
    const onDisconnect = (evt: CustomEvent<{ peerId: string }>): void => {
      if (evt.detail.peerId !== id) return
      clearTimeout(timer)
      node.removeEventListener('peer:disconnect', onDisconnect)
      resolve()
    }
    const timer = setTimeout(() => {
      node.removeEventListener('peer:disconnect', onDisconnect)
      reject(new Error(`${id} still connected after ${timeoutMs} ms`))
    }, timeoutMs)
    node.addEventListener('peer:disconnect', onDisconnect)
  })
  p.catch(() => {})
  return p
}

function assertVerdict (v: RejectedEvent, peer: Network, name: string, message: RegExp): void {
  assert.equal(v.peerId, peer.peerId.toString())
  assert.equal(v.protocol, SWARM_PROTOCOL)
  const [errorName, ...rest] = v.error.split(': ')
  assert.equal(errorName, name, v.error)
  assert.match(rest.join(': '), message)
}

async function newPeer (listen: string[] = []): Promise<Network> {
  const net = await createNetwork({ privateKey: await generateKeyPair('Ed25519'), listen, relayServer: false, dhtMode: 'client' })
  peers.push(net)
  await net.start()
  return net
}

/** A holder's answer to OPEN when it holds the whole root. */
const complete: SwarmMessage = { type: 'bitfield', status: 'complete', leaves: 0, bits: new Uint8Array(0) }

/** An honest downloader's whole session: OPEN, a complete BITFIELD, every leaf and the root, a clean close. */
async function assertServes (peer: Network = honest): Promise<void> {
  assert.equal(node.started, true)
  const w = await Wire.open(peer, nodeAddr)
  w.send({ type: 'open', root: held.root })
  assert.deepEqual(plain(await w.next()), plain(complete))
  const wanted = [...held.leaves.map(l => l.cid), held.root]
  assert.ok(wanted.length <= MAX_BLOCKS_IN_FLIGHT_PER_PEER)
  w.send(...wanted.map((cid): SwarmMessage => ({ type: 'want', cid })))
  for (const [i, cid] of wanted.entries()) assertBlock(await w.next(), held, cid, `honest WANT ${i}`)
  await w.stream.close({ signal: AbortSignal.timeout(STEP_MS) })
  assert.equal(await w.closed(), 'closed')
}

/** A peer that answers the swarm protocol from a script (the holder side, for the node as downloader). */
interface ScriptedHolder {
  net: Network
  addr: string
  /** Every message the node sent it, in order. */
  received: SwarmMessage[]
}

/** Answers one message from the node; raw bytes go out as they are, messages as frames. */
type Script = (msg: SwarmMessage, reply: (...parts: Array<SwarmMessage | Uint8Array>) => void) => void

async function scriptedHolder (script: Script): Promise<ScriptedHolder> {
  const net = await newPeer(['/ip4/127.0.0.1/tcp/0'])
  const received: SwarmMessage[] = []
  await net.handle(SWARM_PROTOCOL, stream => {
    const reply = (...parts: Array<SwarmMessage | Uint8Array>): void => {
      try { stream.send(cat(...parts.map(p => p instanceof Uint8Array ? p : frame(p)))) } catch {}
    }
    void (async () => {
      try {
        for await (const f of lp.decode(stream, { maxDataLength: MAX_FRAME_BYTES })) {
          const msg = decodeMessage(f.subarray())
          received.push(msg)
          script(msg, reply)
        }
      } catch {}
    })()
  })
  return { net, addr: net.getMultiaddrs()[0].toString(), received }
}

describe('swarm limits against a real node', { timeout: 120_000 }, () => {
  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'peerverse-swarm-limits-'))
    node = await createNode(mergeConfig(defaultConfig(dataDir), { discovery: { mdns: false }, listen: ['/ip4/127.0.0.1/tcp/0'], api: false, dht: { mode: 'server' }, relay: { server: false } }))
    node.addEventListener('peer:rejected', evt => { rejections.push(evt.detail) })
    await node.start()
    nodeAddr = multiaddr(node.addresses()[0])
    ;[held, remote] = await Promise.all([makeFile(3 * CHUNK_SIZE + 12_345, 1), makeFile(2 * CHUNK_SIZE + 777, 2)])
    const added = await node.content.add(held.data, { name: 'held' })
    assert.equal(added.cid.toString(), held.root.toString())
    assert.equal(held.leaves.length, 4)
    ;[attacker, honest, flooder, sleeper] = await Promise.all([newPeer(), newPeer(), newPeer(), newPeer()])
    // The silent session starts now and is judged by its own test, so the 5 s wait overlaps the others.
    // Just before it, the same peer opens a session properly: if the OPEN timer outlived the OPEN, it
    // would cut that session before the silent one's verdict.
    keeperWire = await Wire.open(sleeper, nodeAddr, { outliveTest: true })
    keeperWire.send({ type: 'open', root: held.root })
    assert.deepEqual(plain(await keeperWire.next()), plain(complete))
    sleeperVerdict = verdict(sleeper, SESSION_OPEN_TIMEOUT_MS + STEP_MS)
    sleeperWire = await Wire.open(sleeper, nodeAddr, { outliveTest: true })
    sleeperOpenedAt = Date.now()
  })

  afterEach(() => {
    for (const w of Wire.live) if (w.stream.status === 'open') w.stream.abort(new Error('test over'))
    Wire.live.clear()
  })

  after(async () => {
    sleeperWire?.stream.abort(new Error('suite over'))
    keeperWire?.stream.abort(new Error('suite over'))
    await node?.stop()
    await Promise.all(peers.map(async p => { try { await p.stop() } catch {} }))
    if (dataDir != null) await rm(dataDir, { recursive: true, force: true })
  })

  it('serves an honest session: BITFIELD complete, each leaf, DONT_HAVE for the unknown, CANCEL, a clean close', async () => {
    const unknown = (await rawBlock(utf8('nobody holds this'))).cid
    const w = await Wire.open(honest, nodeAddr)
    w.send({ type: 'open', root: held.root })
    assert.deepEqual(plain(await w.next()), plain(complete))
    for (const leaf of held.leaves) {
      w.send({ type: 'want', cid: leaf.cid })
      assertBlock(await w.next(), held, leaf.cid, `leaf ${leaf.cid.toString()}`)
    }
    w.send({ type: 'want', cid: held.root })
    assertBlock(await w.next(), held, held.root, 'root')
    w.send({ type: 'want', cid: unknown })
    assert.deepEqual(plain(await w.next()), plain({ type: 'dont-have', cid: unknown }))
    // CANCEL withdraws a WANT not yet served: leaf 1 is cancelled while leaf 0 is being read from
    // disk, so the next answers are leaf 0 and then the DONT_HAVE that was asked after the CANCEL.
    w.send(
      { type: 'want', cid: held.leaves[0].cid },
      { type: 'want', cid: held.leaves[1].cid },
      { type: 'cancel', cid: held.leaves[1].cid },
      { type: 'want', cid: unknown }
    )
    assertBlock(await w.next(), held, held.leaves[0].cid, 'leaf 0 before the cancel')
    assert.deepEqual(plain(await w.next()), plain({ type: 'dont-have', cid: unknown }), 'the cancelled leaf 1 was not sent')
    // A CANCEL of something not asked for is ignored.
    w.send({ type: 'cancel', cid: unknown }, { type: 'want', cid: held.leaves[3].cid })
    assertBlock(await w.next(), held, held.leaves[3].cid, 'leaf 3 after a stray CANCEL')
    await w.stream.close({ signal: AbortSignal.timeout(STEP_MS) })
    assert.equal(await w.closed(), 'closed')

    // A root the node does not hold: status none.
    const other = await Wire.open(honest, nodeAddr)
    other.send({ type: 'open', root: remote.root })
    assert.deepEqual(plain(await other.next()), plain({ type: 'bitfield', status: 'none', leaves: 0, bits: new Uint8Array(0) }))
    await other.stream.close({ signal: AbortSignal.timeout(STEP_MS) })
    assert.deepEqual(rejectionsOf(honest), [], 'an honest session is never rejected')
  })

  it(`takes ${MAX_BLOCKS_IN_FLIGHT_PER_PEER} WANTs outstanding at once and resets a session that sends more without reading`, async () => {
    const w = await Wire.open(attacker, nodeAddr)
    w.send({ type: 'open', root: held.root })
    assert.deepEqual(plain(await w.next()), plain(complete))
    // At the limit: all answered, in order, and the session goes on.
    const atLimit = Array.from({ length: MAX_BLOCKS_IN_FLIGHT_PER_PEER }, (_, i) => held.leaves[i % held.leaves.length].cid)
    w.send(...atLimit.map((cid): SwarmMessage => ({ type: 'want', cid })))
    for (const [i, cid] of atLimit.entries()) assertBlock(await w.next(), held, cid, `WANT ${i} of ${MAX_BLOCKS_IN_FLIGHT_PER_PEER}`)
    // Past it: the holder is busy reading the first leaf from disk while the rest arrive, so its
    // queue is full when the last ones come (one is being served, MAX are queued, then one more).
    const rejected = verdict(attacker)
    const over = Array.from({ length: MAX_BLOCKS_IN_FLIGHT_PER_PEER + 2 }, (_, i) => held.leaves[i % held.leaves.length].cid)
    w.send(...over.map((cid): SwarmMessage => ({ type: 'want', cid })))
    assertVerdict(await rejected, attacker, 'SwarmProtocolError', new RegExp(`more than ${MAX_BLOCKS_IN_FLIGHT_PER_PEER} requests in flight`))
    assert.equal(await w.closed(), 'reset')
    await assertServes()
  })

  it(`reads a request frame of ${MAX_REQUEST_FRAME_BYTES} bytes and refuses one byte more on its length`, async () => {
    // Exactly at the limit: read and decoded (a WANT padded with zeros, so refused for its content).
    const want = encodeMessage({ type: 'want', cid: held.leaves[0].cid }).subarray()
    const padded = cat(want, new Uint8Array(MAX_REQUEST_FRAME_BYTES - want.length))
    assert.equal(padded.length, MAX_REQUEST_FRAME_BYTES)
    const a = await Wire.open(attacker, nodeAddr)
    a.send({ type: 'open', root: held.root })
    assert.deepEqual(plain(await a.next()), plain(complete))
    let rejected = verdict(attacker)
    a.sendRaw(rawFrame(padded))
    assertVerdict(await rejected, attacker, 'SwarmProtocolError', /trailing bytes after WANT/)
    assert.equal(await a.closed(), 'reset')

    // One byte over: refused on the length prefix alone.
    const b = await Wire.open(attacker, nodeAddr)
    b.send({ type: 'open', root: held.root })
    assert.deepEqual(plain(await b.next()), plain(complete))
    rejected = verdict(attacker)
    b.sendRaw(rawFrame(cat(padded, Uint8Array.of(0))))
    assertVerdict(await rejected, attacker, 'InvalidDataLengthError', /too long/)
    assert.equal(await b.closed(), 'reset')

    // A length prefix that never ends, as the first bytes of a session.
    const c = await Wire.open(attacker, nodeAddr)
    rejected = verdict(attacker)
    c.sendRaw(new Uint8Array(16).fill(0x80))
    assertVerdict(await rejected, attacker, 'InvalidDataLengthLengthError', /too long/)
    assert.equal(await c.closed(), 'reset')

    // A block-sized frame is never read from a downloader.
    const d = await Wire.open(attacker, nodeAddr)
    d.send({ type: 'open', root: held.root })
    assert.deepEqual(plain(await d.next()), plain(complete))
    rejected = verdict(attacker)
    d.send({ type: 'block', cid: held.leaves[0].cid, bytes: held.leaves[0].bytes })
    assertVerdict(await rejected, attacker, 'InvalidDataLengthError', /too long/)
    assert.equal(await d.closed(), 'reset')
    assert.ok(held.leaves[0].bytes.length <= MAX_BLOCK_BYTES)
    await assertServes()
  })

  it('resets a session whose first message is not OPEN', async () => {
    for (const first of [
      { type: 'want', cid: held.leaves[0].cid },
      { type: 'cancel', cid: held.leaves[0].cid },
      { type: 'have', index: 0 }
    ] satisfies SwarmMessage[]) {
      const w = await Wire.open(attacker, nodeAddr)
      const rejected = verdict(attacker)
      w.send(first)
      assertVerdict(await rejected, attacker, 'SwarmProtocolError', new RegExp(`expected OPEN, got ${first.type}`))
      assert.equal(await w.closed(), 'reset')
    }
    await assertServes()
  })

  it('resets a session that sends a holder\'s message (BLOCK, DONT_HAVE, HAVE, BITFIELD) or a second OPEN', async () => {
    const cases: SwarmMessage[] = [
      { type: 'block', cid: held.leaves[0].cid, bytes: utf8('not asked for') },
      { type: 'dont-have', cid: held.leaves[0].cid },
      { type: 'have', index: 1 },
      { type: 'bitfield', status: 'complete', leaves: 0, bits: new Uint8Array(0) },
      { type: 'open', root: held.root }
    ]
    for (const msg of cases) {
      const w = await Wire.open(attacker, nodeAddr)
      w.send({ type: 'open', root: held.root })
      assert.deepEqual(plain(await w.next()), plain(complete))
      const rejected = verdict(attacker)
      w.send(msg)
      assertVerdict(await rejected, attacker, 'SwarmProtocolError', new RegExp(`unexpected ${msg.type} from a downloader`))
      assert.equal(await w.closed(), 'reset')
    }
    await assertServes()
  })

  it(`limits one peer's WANTs, across its sessions, to a burst of ${REQUEST_BURST} then ${REQUESTS_PER_PEER_PER_SECOND} per second`, async t => {
    const unknown = (await rawBlock(utf8('flood'))).cid
    const want: SwarmMessage = { type: 'want', cid: unknown }
    // Several sessions from one peer. Each sends a batch of exactly the in-flight limit in one write
    // and waits for all of its answers before the next batch, so no session ever has more than the
    // limit outstanding; together they ask faster than the bucket refills.
    const SESSIONS = 4
    const batch = MAX_BLOCKS_IN_FLIGHT_PER_PEER
    const cap = REQUEST_BURST + REQUESTS_PER_PEER_PER_SECOND * 5
    const wires: Wire[] = []
    for (let i = 0; i < SESSIONS; i++) {
      const w = await Wire.open(flooder, nodeAddr)
      w.send({ type: 'open', root: held.root })
      assert.deepEqual(plain(await w.next()), plain(complete))
      wires.push(w)
    }
    const rejected = verdict(flooder)
    const batchFrames = cat(...Array.from({ length: batch }, () => frame(want)))
    let sent = 0
    let answered = 0
    let stop = false
    const strays: string[] = []
    // One deadline for the whole flood (a timer per message would slow the flood it measures).
    const deadline = setTimeout(() => { for (const w of wires) w.stream.abort(new Error('flood deadline')) }, STEP_MS)
    const start = performance.now()
    const ends = await Promise.all(wires.map(async w => {
      try {
        while (!stop && sent < cap) {
          w.sendRaw(batchFrames)
          sent += batch
          for (let i = 0; i < batch; i++) {
            const r = await w.frames.next()
            if (r.done === true) return 'ended'
            const msg = decodeMessage(r.value.subarray())
            if (msg.type !== 'dont-have' || !msg.cid.equals(unknown)) strays.push(msg.type)
            answered++
          }
        }
        return 'stopped'
      } catch (err) {
        stop = true
        return (err as Error).name
      }
    }))
    clearTimeout(deadline)
    const seconds = (performance.now() - start) / 1000
    t.diagnostic(`${sent} WANTs sent over ${SESSIONS} sessions, ${answered} answered in ${(seconds * 1000).toFixed(0)} ms (${(sent / seconds).toFixed(0)}/s) before the reset`)
    try {
      assert.deepEqual(strays, [])
      assert.ok(sent < cap, `never limited: ${sent} WANTs at ${(sent / seconds).toFixed(0)}/s`)
      assertVerdict(await rejected, flooder, 'SwarmRateLimitError', new RegExp(`more than ${REQUESTS_PER_PEER_PER_SECOND} requests per second`))
      assert.ok(wires.some(w => w.stream.status === 'reset'), `sessions ended: ${ends.join(', ')}`)
      // Every answer is for a WANT the holder took: no more than the bucket holds plus its refill
      // over the whole flood, counted for the peer (not per session) ...
      assert.ok(answered <= REQUEST_BURST + REQUESTS_PER_PEER_PER_SECOND * seconds + 1, `${answered} answered in ${seconds} s`)
      // ... and at least the burst, less what the resets cut off (at most a batch per session).
      assert.ok(answered >= REQUEST_BURST - SESSIONS * batch, `only ${answered} answered`)
    } finally {
      for (const w of wires) w.stream.abort(new Error('flood over'))
    }
    await assertServes()
  })

  it(`refuses session ${MAX_SESSIONS_PER_CONNECTION + 1} on one connection, and takes new sessions once the others end`, async t => {
    const open: Wire[] = []
    try {
      for (let i = 0; i < MAX_SESSIONS_PER_CONNECTION; i++) {
        const w = await Wire.open(honest, nodeAddr)
        w.send({ type: 'open', root: held.root })
        assert.deepEqual(plain(await w.next()), plain(complete), `session ${i}`)
        open.push(w)
      }
      assert.equal(node.net.getConnections(honest.peerId).length, 1, 'all sessions share one connection')
      // One more: refused by libp2p's inbound stream limit for the protocol (at negotiation, or reset right after).
      let refusal: string | undefined
      try {
        const w = await Wire.open(honest, nodeAddr)
        w.send({ type: 'open', root: held.root })
        const answer = await w.next()
        assert.fail(`session ${MAX_SESSIONS_PER_CONNECTION + 1} was answered with ${answer.type}`)
      } catch (err) {
        if ((err as Error).name === 'AssertionError') throw err
        refusal = (err as Error).name
      }
      t.diagnostic(`session ${MAX_SESSIONS_PER_CONNECTION + 1} refused: ${refusal}`)
      // The sessions it had are still served.
      open[0].send({ type: 'want', cid: held.leaves[2].cid })
      assertBlock(await open[0].next(), held, held.leaves[2].cid, 'an open session after the refusal')
    } finally {
      await Promise.all(open.map(async w => w.stream.close({ signal: AbortSignal.timeout(STEP_MS) }).catch(() => { w.stream.abort(new Error('test over')) })))
    }
    await Promise.all(open.map(async w => { assert.equal(await w.closed(), 'closed') }))
    // Their slots are free again: a new session on the same connection is served.
    await assertServes(honest)
    assert.equal(node.net.getConnections(honest.peerId).length, 1)
  })

  it(`resets a session with no OPEN within SESSION_OPEN_TIMEOUT_MS (${SESSION_OPEN_TIMEOUT_MS} ms)`, async () => {
    const v = await sleeperVerdict
    assertVerdict(v, sleeper, 'SwarmProtocolError', /no OPEN in time/)
    const waited = v.at - sleeperOpenedAt
    assert.ok(waited >= SESSION_OPEN_TIMEOUT_MS - 100, `reset after ${waited} ms`)
    assert.ok(waited < SESSION_OPEN_TIMEOUT_MS + 3_000, `reset after ${waited} ms`)
    assert.equal(await sleeperWire.closed(), 'reset')
    // The timer is the silent session's own: the peer's other session, opened just before it with an
    // OPEN, is still served after it, and was never rejected.
    assert.equal(keeperWire.stream.status, 'open')
    keeperWire.send({ type: 'want', cid: held.leaves[1].cid })
    assertBlock(await keeperWire.next(), held, held.leaves[1].cid, 'the session that opened in time')
    assert.equal(rejectionsOf(sleeper).length, 1)
    await keeperWire.stream.close({ signal: AbortSignal.timeout(STEP_MS) })
    assert.equal(await keeperWire.closed(), 'closed')
    // The same peer, on a new session, is served.
    await assertServes(sleeper)
  })

  it('as a downloader, rejects and disconnects a holder that sends wrong bytes (fetch)', async () => {
    assert.equal(node.content.has(remote.root), false)
    const liar = await scriptedHolder((msg, reply) => {
      if (msg.type === 'open') reply(complete)
      if (msg.type === 'want') {
        const bytes = (remote.blocks.get(msg.cid.toString()) ?? utf8('anything')).slice()
        bytes[0] ^= 0xff
        reply({ type: 'block', cid: msg.cid, bytes })
      }
    })
    const rejected = verdict(liar.net)
    const gone = disconnected(liar.net)
    await node.connect(liar.addr, { signal: AbortSignal.timeout(STEP_MS) })
    const controller = new AbortController()
    const fetching = node.content.fetch(remote.root, { signal: AbortSignal.any([controller.signal, AbortSignal.timeout(STEP_MS * 2)]) })
    fetching.catch(() => {})
    assertVerdict(await rejected, liar.net, 'BadBlockError', /do not match/)
    await gone
    assert.equal(node.net.getConnections(liar.net.peerId).length, 0)
    // The node asked properly: OPEN for the root, then a WANT for the root block.
    assert.deepEqual(liar.received.slice(0, 2).map(m => m.type), ['open', 'want'])
    assert.equal(liar.received[0].type === 'open' && liar.received[0].root.toString(), remote.root.toString())
    assert.equal(liar.received[1].type === 'want' && liar.received[1].cid.toString(), remote.root.toString())
    // No honest holder: the fetch waits until it is aborted, and stores nothing false.
    controller.abort()
    await assert.rejects(fetching, { name: 'AbortError' })
    assert.equal(node.content.has(remote.root), false)
  })

  it('as a downloader, rejects and disconnects a holder that sends a block it was not asked for (cat)', async () => {
    const pushy = await scriptedHolder((msg, reply) => {
      // A leaf is a real block of the file, but nobody asked for it (the root comes first).
      if (msg.type === 'open') reply(complete, { type: 'block', cid: remote.leaves[1].cid, bytes: remote.leaves[1].bytes })
    })
    const rejected = verdict(pushy.net)
    const gone = disconnected(pushy.net)
    await node.connect(pushy.addr, { signal: AbortSignal.timeout(STEP_MS) })
    const controller = new AbortController()
    const reading = (async () => {
      for await (const _ of node.content.cat(remote.root, { signal: AbortSignal.any([controller.signal, AbortSignal.timeout(STEP_MS * 2)]) })) { /* nothing arrives */ }
    })()
    reading.catch(() => {})
    assertVerdict(await rejected, pushy.net, 'SwarmProtocolError', /unrequested block/)
    await gone
    assert.equal(node.net.getConnections(pushy.net.peerId).length, 0)
    controller.abort()
    await assert.rejects(reading, { name: 'AbortError' })
    assert.equal(node.content.has(remote.leaves[1].cid), false, 'the unrequested block was not kept')
  })

  // Download.readLoop and Download.probe (src/content/swarm.ts) penalize only SwarmProtocolError and
  // BadBlockError; lp.decode's InvalidDataLengthError for a frame over MAX_FRAME_BYTES just drops the
  // session, so the holder is neither reported nor banned and is probed again PROBE_BACKOFF_MS later.
  it('as a downloader, rejects and disconnects a holder that sends a frame over MAX_FRAME_BYTES', async t => {
    const huge = await scriptedHolder((msg, reply) => {
      if (msg.type === 'open') reply(complete)
      // A length prefix one past the largest frame, and some of its body.
      if (msg.type === 'want') reply(cat(varint(MAX_FRAME_BYTES + 1), new Uint8Array(64 * 1024)))
    })
    // An honest verdict comes within milliseconds of the frame; 3 s keeps this known failure short.
    const rejected = verdict(huge.net, 3_000)
    const gone = disconnected(huge.net, 3_000)
    await node.connect(huge.addr, { signal: AbortSignal.timeout(STEP_MS) })
    const controller = new AbortController()
    const fetching = node.content.fetch(remote.root, { signal: AbortSignal.any([controller.signal, AbortSignal.timeout(STEP_MS * 2)]) })
    fetching.catch(() => {})
    try {
      assertVerdict(await rejected, huge.net, 'InvalidDataLengthError', /too long/)
      await gone
      assert.equal(node.net.getConnections(huge.net.peerId).length, 0)
    } finally {
      t.diagnostic(`the holder was sent OPEN ${huge.received.filter(m => m.type === 'open').length} times`)
      controller.abort()
      await fetching.catch(() => {})
      await huge.net.hangUp(node.net.peerId).catch(() => {})
    }
  })

  it('as a downloader, still fetches the file from an honest holder after the liars', async () => {
    const good = await scriptedHolder((msg, reply) => {
      if (msg.type === 'open') reply(complete)
      if (msg.type === 'want') {
        const bytes = remote.blocks.get(msg.cid.toString())
        reply(bytes == null ? { type: 'dont-have', cid: msg.cid } : { type: 'block', cid: msg.cid, bytes })
      }
    })
    await node.connect(good.addr, { signal: AbortSignal.timeout(STEP_MS) })
    const stat = await node.content.fetch(remote.root, { signal: AbortSignal.timeout(STEP_MS * 2) })
    assert.equal(stat.size, remote.data.length)
    assert.equal(stat.localBlocks, remote.leaves.length)
    assert.equal(stat.blocks, remote.leaves.length)
    const parts: Uint8Array[] = []
    for await (const p of node.content.cat(remote.root)) parts.push(p)
    assert.ok(sameBytes(cat(...parts), remote.data), 'fetched bytes differ')
    // The holder was asked for every block of the file and nothing else.
    const wants = good.received.filter(m => m.type === 'want').map(m => m.type === 'want' ? m.cid.toString() : '')
    assert.deepEqual(new Set(wants), new Set(remote.blocks.keys()))
    assert.deepEqual(rejectionsOf(good.net), [])
    assert.equal(node.net.getConnections(good.net.peerId).length > 0, true)
    // Over the whole suite, the honest peer was never rejected, and every rejection counted.
    assert.deepEqual(rejectionsOf(honest), [])
    assert.equal(node.status().rejected, rejections.length)
  })
})
