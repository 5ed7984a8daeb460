/**
 * How a download shares its requests among holders, and what it bans them for.
 *
 * The windows on their own (holderWindow, Session's measured rate, leastLoaded), then a real node
 * on 127.0.0.1 downloading from scripted holders (bare libp2p peers speaking the swarm protocol by
 * hand) that answer nothing until told: every holder with room gets its whole window, the
 * download's window grows with its holders up to MAX_BLOCKS_IN_FLIGHT_PER_DOWNLOAD and no further,
 * and a freed slot goes to the emptiest holder. Last, holders whose stream or connection ends
 * before their BITFIELD, or whose BITFIELD never comes: none of them is banned, and each is asked
 * again and serves the file.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import type { Stream } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import * as lp from 'it-length-prefixed'
import type { CID } from 'multiformats/cid'
import {
  MAX_BLOCKS_IN_FLIGHT_PER_DOWNLOAD, MAX_BLOCKS_IN_FLIGHT_PER_PEER, MIN_BLOCKS_IN_FLIGHT_PER_PEER, PROBE_BACKOFF_MS,
  REQUEST_QUEUE_SECONDS, SESSION_OPEN_TIMEOUT_MS
} from '../../src/content/swarm-limits.ts'
import { holderWindow, isViolation, leastLoaded, Session, SessionClosedError, SessionTimeoutError } from '../../src/content/swarm-session.ts'
import { decodeMessage, encodeMessage, MAX_FRAME_BYTES, SWARM_PROTOCOL, type SwarmMessage } from '../../src/content/swarm-wire.ts'
import { CHUNK_SIZE, importFile, type Block } from '../../src/content/unixfs.ts'
import type { Network } from '../../src/net/network.ts'
import type { PeerverseNode } from '../../src/node/node.ts'
import { cat } from '../helpers/bytes.ts'
import { LocalPeers, waiter } from '../helpers/local-peers.ts'
import { seededBytes } from '../helpers/random.ts'

const STEP_MS = 20_000
const eventually = waiter({ timeoutMs: STEP_MS, intervalMs: 20 })

/** A file imported in memory: its root, its leaves in order and every block by CID. */
interface TestFile { data: Uint8Array, root: CID, leaves: Block[], blocks: Map<string, Uint8Array> }

async function makeFile (size: number, seed: number): Promise<TestFile> {
  const data = seededBytes(size, seed)
  const all: Block[] = []
  const { cid } = await importFile([data], async b => { all.push(b) })
  return { data, root: cid, leaves: all.filter(b => b.cid.code === 0x55), blocks: new Map(all.map(b => [b.cid.toString(), b.bytes])) }
}

const frame = (msg: SwarmMessage): Uint8Array => { const body = encodeMessage(msg).subarray(); return lp.encode.single(body).subarray() }
const complete: SwarmMessage = { type: 'bitfield', status: 'complete', leaves: 0, bits: new Uint8Array(0) }

/** A holder speaking the swarm protocol by hand: each session's messages go to `script`. */
interface Scripted {
  net: Network
  addr: string
  /** OPENs received, one a session. */
  opens: number
  /** Leaf WANTs received and not cancelled, by CID, with the session to answer on. */
  pending: Map<string, Stream>
  /** Every leaf WANT received. */
  wants: number
  /** Answers every WANT at once from now on, the pending ones first. */
  eager: () => void
}

function send (stream: Stream, msg: SwarmMessage): void {
  try { stream.send(frame(msg)) } catch {}
}

// ---------------------------------------------------------------- the windows on their own

const session = (peer: string, inflight: number, rate = 0, blockBytes = 0): Session => {
  const s = new Session(peer, {} as unknown as Stream, 'complete', 0, new Uint8Array(0))
  for (let i = 0; i < inflight; i++) s.inflight.add(`${peer}-${i}`)
  s.rate = rate
  s.blockBytes = blockBytes
  return s
}

describe('holder windows', () => {
  it('an unmeasured holder gets MAX_BLOCKS_IN_FLIGHT_PER_PEER; a measured one REQUEST_QUEUE_SECONDS of its rate, within the bounds', () => {
    assert.equal(holderWindow(0, 0), MAX_BLOCKS_IN_FLIGHT_PER_PEER)
    assert.equal(holderWindow(0, CHUNK_SIZE), MAX_BLOCKS_IN_FLIGHT_PER_PEER)
    // Exactly the largest window's worth of rate, and past it.
    const atMax = MAX_BLOCKS_IN_FLIGHT_PER_PEER * CHUNK_SIZE / REQUEST_QUEUE_SECONDS
    assert.equal(holderWindow(atMax, CHUNK_SIZE), MAX_BLOCKS_IN_FLIGHT_PER_PEER)
    assert.equal(holderWindow(atMax * 100, CHUNK_SIZE), MAX_BLOCKS_IN_FLIGHT_PER_PEER)
    assert.equal(holderWindow(atMax - CHUNK_SIZE / REQUEST_QUEUE_SECONDS, CHUNK_SIZE), MAX_BLOCKS_IN_FLIGHT_PER_PEER - 1)
    // A relay's trickle: never below the smallest window.
    assert.equal(holderWindow(1, CHUNK_SIZE), MIN_BLOCKS_IN_FLIGHT_PER_PEER)
    assert.equal(holderWindow(MIN_BLOCKS_IN_FLIGHT_PER_PEER * CHUNK_SIZE / REQUEST_QUEUE_SECONDS, CHUNK_SIZE), MIN_BLOCKS_IN_FLIGHT_PER_PEER)
    assert.equal(holderWindow((MIN_BLOCKS_IN_FLIGHT_PER_PEER + 1) * CHUNK_SIZE / REQUEST_QUEUE_SECONDS, CHUNK_SIZE), MIN_BLOCKS_IN_FLIGHT_PER_PEER + 1)
  })

  it('a session measures what its holder delivers while asked, not its idle spells', () => {
    const s = session('a', 0)
    s.requested(1_000)
    s.inflight.add('x')
    s.delivered(CHUNK_SIZE, 1_500)
    assert.equal(s.rate, CHUNK_SIZE * 2)
    assert.equal(s.window(), Math.ceil(2 * REQUEST_QUEUE_SECONDS))
    // A small block (an interior node) does not shrink the unit of the window.
    s.delivered(1_000, 1_500)
    assert.equal(s.blockBytes, CHUNK_SIZE)
    s.rate = CHUNK_SIZE * 2
    s.inflight.clear()
    // Idle for a minute, then asked again: the clock starts at the request.
    s.requested(61_500)
    s.inflight.add('y')
    s.delivered(CHUNK_SIZE, 62_000)
    assert.equal(s.rate, CHUNK_SIZE * 2)
    // A holder that takes 10 s a block drops to the smallest window.
    for (let t = 72_000; t <= 200_000; t += 10_000) s.delivered(CHUNK_SIZE, t)
    assert.equal(s.window(), MIN_BLOCKS_IN_FLIGHT_PER_PEER)
  })

  it('a request goes to the holder with the least in flight for its window', () => {
    const full = [0, 1, 2].map(i => session(`full${i}`, MAX_BLOCKS_IN_FLIGHT_PER_PEER))
    const empty = session('empty', 0)
    assert.equal(leastLoaded([...full, empty]), empty, 'three full holders and an empty one')
    assert.equal(leastLoaded(full), undefined, 'no holder has room')
    assert.equal(leastLoaded([...full, empty], new Set([empty])), undefined, 'the empty one has nothing to give')
    // A slow holder half full (1 of 2) against a fast one with 3 of 8: the fast one.
    const slow = session('slow', 1, 1, CHUNK_SIZE)
    const fast = session('fast', 3)
    assert.equal(slow.window(), MIN_BLOCKS_IN_FLIGHT_PER_PEER)
    assert.equal(leastLoaded([slow, fast]), fast)
    // Equal loads: the one with fewer in flight, else the first.
    assert.equal(leastLoaded([session('a', 4), session('b', 4)])?.peer, 'a')
    const closed = session('closed', 0)
    closed.closed = true
    assert.equal(leastLoaded([closed, session('b', 1)])?.peer, 'b')
  })

  it('a closed stream and a timeout are no violation; a protocol error is', () => {
    assert.equal(isViolation(new SessionClosedError('stream ended before BITFIELD')), false)
    assert.equal(isViolation(new SessionTimeoutError('no BITFIELD')), false)
    assert.equal(isViolation(Object.assign(new Error('reset'), { name: 'StreamResetError' })), false)
    assert.equal(isViolation(Object.assign(new Error('eof'), { name: 'UnexpectedEOFError' })), false)
    assert.equal(isViolation(Object.assign(new Error('too long'), { name: 'InvalidDataLengthError' })), true)
  })
})

// ---------------------------------------------------------------- against a real node

describe('a download among real holders', { timeout: 300_000 }, () => {
  const peers = new LocalPeers('swarm-fair')
  let node: PeerverseNode
  let big: TestFile

  before(async () => {
    node = await peers.startNode()
    // One leaf more than the download's window, so the window, not the file, is what binds.
    ;big = await makeFile((MAX_BLOCKS_IN_FLIGHT_PER_DOWNLOAD + 8) * CHUNK_SIZE, 11)
  })

  after(async () => { await peers.stop() })

  /** A holder of `file` that serves the root and interior nodes at once and leaves only when `answer` is called. */
  async function slowHolder (file: TestFile): Promise<Scripted> {
    const net = await peers.newPeer(['/ip4/127.0.0.1/tcp/0'])
    let eager = false
    const answer = (stream: Stream, key: string): void => {
      send(stream, { type: 'block', cid: file.leaves.find(l => l.cid.toString() === key)?.cid as CID, bytes: file.blocks.get(key) as Uint8Array })
    }
    const h: Scripted = {
      net,
      addr: net.getMultiaddrs()[0].toString(),
      opens: 0,
      pending: new Map(),
      wants: 0,
      eager: () => {
        eager = true
        for (const [key, stream] of h.pending) answer(stream, key)
        h.pending.clear()
      }
    }
    const leafKeys = new Set(file.leaves.map(l => l.cid.toString()))
    await net.handle(SWARM_PROTOCOL, stream => {
      void (async () => {
        try {
          for await (const f of lp.decode(stream, { maxDataLength: MAX_FRAME_BYTES })) {
            const msg = decodeMessage(f.subarray())
            if (msg.type === 'open') {
              if (!msg.root.equals(file.root)) { send(stream, { type: 'bitfield', status: 'none', leaves: 0, bits: new Uint8Array(0) }); continue }
              h.opens++
              send(stream, complete)
            }
            if (msg.type === 'want') {
              const key = msg.cid.toString()
              const bytes = file.blocks.get(key)
              if (bytes == null) { send(stream, { type: 'dont-have', cid: msg.cid }); continue }
              if (!leafKeys.has(key)) { send(stream, { type: 'block', cid: msg.cid, bytes }); continue }
              h.wants++
              if (eager) answer(stream, key)
              else h.pending.set(key, stream)
            }
            if (msg.type === 'cancel') h.pending.delete(msg.cid.toString())
          }
        } catch {}
      })()
    }, { maxInboundStreams: 32 })
    return h
  }

  /** Sends one pending leaf of `h`'s. */
  function answerOne (h: Scripted, file: TestFile): void {
    const [key, stream] = h.pending.entries().next().value as [string, Stream]
    h.pending.delete(key)
    send(stream, { type: 'block', cid: file.leaves.find(l => l.cid.toString() === key)?.cid as CID, bytes: file.blocks.get(key) as Uint8Array })
  }

  it(`every holder gets its window, the download at most ${MAX_BLOCKS_IN_FLIGHT_PER_DOWNLOAD} in flight, and a freed slot goes to the emptiest holder`, async t => {
    const holderCount = MAX_BLOCKS_IN_FLIGHT_PER_DOWNLOAD / MAX_BLOCKS_IN_FLIGHT_PER_PEER + 1
    const holders = await Promise.all(Array.from({ length: holderCount }, async () => await slowHolder(big)))
    for (const h of holders) await node.connect(h.addr, { signal: AbortSignal.timeout(STEP_MS) })
    const controller = new AbortController()
    const fetching = node.content.fetch(big.root, { signal: controller.signal })
    fetching.catch(() => {})
    try {
      const outstanding = (): number => holders.reduce((n, h) => n + h.pending.size, 0)
      await eventually('every holder opened a session', () => holders.every(h => h.opens >= 1))
      await eventually(`${MAX_BLOCKS_IN_FLIGHT_PER_DOWNLOAD} leaves requested`, () => outstanding() >= MAX_BLOCKS_IN_FLIGHT_PER_DOWNLOAD)
      const counts = holders.map(h => h.pending.size)
      t.diagnostic(`requests per holder: ${counts.join(' ')}`)
      assert.equal(outstanding(), MAX_BLOCKS_IN_FLIGHT_PER_DOWNLOAD, 'the download window')
      // (A holder whose session opened after the window filled has none yet.)
      for (const n of counts) assert.ok(n <= MAX_BLOCKS_IN_FLIGHT_PER_PEER, `a holder was asked ${n}`)
      // A block from the fullest holder frees one slot, and one request takes it, at a holder then among the emptiest.
      const fullest = counts.indexOf(Math.max(...counts))
      const after = counts.map((n, i) => i === fullest ? n - 1 : n)
      const wantsBefore = holders.map(h => h.wants)
      answerOne(holders[fullest], big)
      await eventually('the freed slot is asked of someone', () => outstanding() === MAX_BLOCKS_IN_FLIGHT_PER_DOWNLOAD)
      const got = holders.map((h, i) => h.wants - wantsBefore[i])
      t.diagnostic(`the freed slot went to: ${got.join(' ')}`)
      assert.equal(got.reduce((a, b) => a + b, 0), 1)
      assert.equal(after[got.indexOf(1)], Math.min(...after), 'to a holder with the fewest requests')
      // Everyone answers: the file completes.
      for (const h of holders) h.eager()
      const stat = await fetching
      assert.equal(stat.localBlocks, big.leaves.length)
    } finally {
      controller.abort()
      await fetching.catch(() => {})
      for (const h of holders) await h.net.hangUp(node.net.peerId).catch(() => {})
    }
  })

  it('four holders with room: each gets its whole window (more than three windows in all)', async () => {
    const file = await makeFile((4 * MAX_BLOCKS_IN_FLIGHT_PER_PEER + 2) * CHUNK_SIZE, 13)
    const holders = await Promise.all([0, 1, 2, 3].map(async () => await slowHolder(file)))
    for (const h of holders) await node.connect(h.addr, { signal: AbortSignal.timeout(STEP_MS) })
    const controller = new AbortController()
    const fetching = node.content.fetch(file.root, { signal: controller.signal })
    fetching.catch(() => {})
    try {
      await eventually('every holder has a full window', () => holders.every(h => h.pending.size === MAX_BLOCKS_IN_FLIGHT_PER_PEER))
      for (const h of holders) h.eager()
      assert.equal((await fetching).localBlocks, file.leaves.length)
    } finally {
      controller.abort()
      await fetching.catch(() => {})
      for (const h of holders) await h.net.hangUp(node.net.peerId).catch(() => {})
    }
  })

  /**
   * A holder of `small` whose first session fails as `first` says, then serves honestly. Returns
   * the holder and how many sessions it saw.
   */
  async function flakyHolder (small: TestFile, first: 'close-stream' | 'close-connection' | 'silent'): Promise<{ net: Network, addr: string, opens: () => number }> {
    const net = await peers.newPeer(['/ip4/127.0.0.1/tcp/0'])
    let opens = 0
    const silent: Stream[] = []
    await net.handle(SWARM_PROTOCOL, stream => {
      void (async () => {
        try {
          for await (const f of lp.decode(stream, { maxDataLength: MAX_FRAME_BYTES })) {
            const msg = decodeMessage(f.subarray())
            if (msg.type === 'open') {
              opens++
              if (opens === 1) {
                if (first === 'close-stream') { await stream.close(); return }
                if (first === 'close-connection') { await net.hangUp(node.net.peerId); return }
                silent.push(stream)
                continue
              }
              send(stream, complete)
            }
            if (msg.type === 'want') {
              const bytes = small.blocks.get(msg.cid.toString())
              send(stream, bytes == null ? { type: 'dont-have', cid: msg.cid } : { type: 'block', cid: msg.cid, bytes })
            }
          }
        } catch {}
      })()
    }, { maxInboundStreams: 32 })
    return { net, addr: net.getMultiaddrs()[0].toString(), opens: () => opens }
  }

  for (const [i, first] of (['close-stream', 'close-connection', 'silent'] as const).entries()) {
    const what = { 'close-stream': 'closes its stream before its BITFIELD', 'close-connection': 'closes its connection before its BITFIELD', silent: `sends no BITFIELD within SESSION_OPEN_TIMEOUT_MS` }[first]
    it(`a holder that ${what} is not banned, and is asked again and serves the file`, async () => {
      const rejections = peers.rejections.get(node) as unknown[]
      const rejectedBefore = rejections.length
      const small = await makeFile(3 * CHUNK_SIZE + 5, 20 + i)
      const flaky = await flakyHolder(small, first)
      const id = flaky.net.peerId.toString()
      await node.connect(flaky.addr, { signal: AbortSignal.timeout(STEP_MS) })
      const fetching = node.content.fetch(small.root, { signal: AbortSignal.timeout(SESSION_OPEN_TIMEOUT_MS + PROBE_BACKOFF_MS + STEP_MS * 2) })
      fetching.catch(() => {})
      try {
        await eventually('the first session ended', () => flaky.opens() >= 1)
        if (first === 'close-connection') {
          await eventually('the connection closed', () => node.net.getConnections(flaky.net.peerId).length === 0)
          // The holder comes back: our connection gate lets it in (a banned peer is refused).
          await eventually('the holder is connected again', () => node.net.getConnections(flaky.net.peerId).length > 0, {
            trigger: async () => await flaky.net.dial(multiaddr(node.addresses()[0]), { signal: AbortSignal.timeout(STEP_MS) })
          })
        }
        const stat = await fetching
        assert.equal(stat.localBlocks, small.leaves.length)
        assert.ok(flaky.opens() >= 2, `the holder was asked again (${flaky.opens()} sessions)`)
        assert.equal(node.content.isBanned(id), false)
        assert.equal(rejections.length, rejectedBefore, `rejections: ${JSON.stringify(rejections.slice(rejectedBefore))}`)
        assert.ok(node.net.getConnections(flaky.net.peerId).length > 0, 'still connected')
        const parts: Uint8Array[] = []
        for await (const p of node.content.cat(small.root)) parts.push(p)
        assert.deepEqual(cat(...parts), small.data)
      } finally {
        await fetching.catch(() => {})
        await flaky.net.hangUp(node.net.peerId).catch(() => {})
      }
    })
  }
})
