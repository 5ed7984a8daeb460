/**
 * Feed replication between real nodes on 127.0.0.1, and `/peerverse/feeds/1.0.0` spoken directly
 * from raw libp2p peers. Honest replication first (several batches, an author who is offline), then
 * the server's limits (batch size, heads per request, frame size, malformed requests, request rate:
 * each a 'peer:rejected' naming the error, and the node goes on serving honest peers), then servers
 * that lie to a node (tampered entries, another author's, out of order), and the cap on feeds held
 * for strangers. Authors other than the nodes are test keys from fixed seeds.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import * as dagCbor from '@ipld/dag-cbor'
import type { PeerId, Stream } from '@libp2p/interface'
import { lpStream } from '@libp2p/utils'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { didFromPublicKey } from '../../src/identity/did.ts'
import { ed25519KeyFromSeed, type Ed25519Key } from '../../src/identity/ed25519.ts'
import { createEntry, decodeEntry, type Entry, type EntryBody, type EntryKind, type FeedHead } from '../../src/social/feed.ts'
import {
  FEEDS_PROTOCOL, MAX_BATCH_ENTRIES, MAX_HEADS_PER_REQUEST, MAX_REQUEST_BYTES, MAX_STRANGER_FEEDS, REQUEST_BURST,
  REQUESTS_PER_PEER_PER_SECOND
} from '../../src/social/service.ts'
import type { Network } from '../../src/net/network.ts'
import type { PeerverseNode, RejectedEvent } from '../../src/node/node.ts'
import { exchange, LocalPeers, waiter, type Answer } from '../helpers/local-peers.ts'

/** How long any single step may take before the test fails instead of hanging. */
const STEP_MS = 10_000

// ---------------------------------------------------------------- helpers

const keyOf = (...seed: number[]): Ed25519Key => {
  const s = new Uint8Array(32).fill(7)
  s.set(seed)
  return ed25519KeyFromSeed(s)
}
const didOf = (key: Ed25519Key): string => didFromPublicKey(key.publicKey)
const headOf = (e: Entry): FeedHead => ({ seq: e.payload.seq, id: e.id, ts: e.payload.ts })
const b64 = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64')
const delay = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

/** A feed by `key`: entries made by `make(i)` in order, one ms apart from `t0`. */
async function buildFeed (key: Ed25519Key, n: number, t0: number, make: (i: number) => [EntryKind, EntryBody]): Promise<Entry[]> {
  const out: Entry[] = []
  for (let i = 0; i < n; i++) {
    const [kind, body] = make(i)
    const last = out.at(-1)
    out.push(await createEntry(key, last == null ? null : headOf(last), kind, body, t0 + i))
  }
  return out
}

/** This file's nodes and bare networks, and every 'peer:rejected' each node emitted, in order. */
const peers = new LocalPeers('social-limits')
const { rejections } = peers
const startNode = async (): Promise<PeerverseNode> => await peers.startNode()
const newPeer = async (listen: string[] = []): Promise<Network> => await peers.newPeer(listen)
/** Waits until `cond` holds, calling `trigger` between looks; fails after the deadline. */
const eventually = waiter({ timeoutMs: STEP_MS, intervalMs: 50 })

const rejectionsOf = (node: PeerverseNode, peer: string | { toString: () => string }): RejectedEvent[] =>
  (rejections.get(node) ?? []).filter(r => r.peerId === peer.toString())

/** Waits for `node` to reject `peer` with error `name` (the verdict's error is "Name: message"). */
async function verdict (node: PeerverseNode, peer: Network | PeerId, name: string, options: { trigger?: () => Promise<unknown>, message?: RegExp } = {}): Promise<RejectedEvent> {
  const id = 'peerId' in peer ? peer.peerId.toString() : peer.toString()
  const match = (r: RejectedEvent): boolean => r.error.split(': ')[0] === name && (options.message == null || options.message.test(r.error))
  await eventually(`a ${name} verdict on ${id} (got ${JSON.stringify(rejectionsOf(node, id).map(r => r.error))})`, () => rejectionsOf(node, id).some(match), { trigger: options.trigger })
  const v = rejectionsOf(node, id).find(match) as RejectedEvent
  assert.equal(v.protocol, FEEDS_PROTOCOL)
  return v
}

/** Everything a node holds of one author, as bytes. */
async function heldBytes (node: PeerverseNode, did: string): Promise<string[]> {
  const out: string[] = []
  for (let from = 1; ; from += 500) {
    const batch = await node.social.store.range(did, from, 500)
    out.push(...batch.map(b64))
    if (batch.length < 500) return out
  }
}

after(async () => { await peers.stop() })

// ---------------------------------------------------------------- speaking the protocol

/**
 * One request from a raw peer: `body` (a request object, or raw bytes sent as they are) out, every
 * answer frame in until the server closes or resets the stream.
 */
async function ask (from: Network, to: Multiaddr, body: Record<string, unknown> | Uint8Array, options: { framed?: boolean } = {}): Promise<Answer> {
  const signal = AbortSignal.timeout(STEP_MS)
  const stream: Stream = await from.dialProtocol(to, FEEDS_PROTOCOL, { signal })
  return await exchange(stream, 2 * MAX_REQUEST_BYTES, signal, async lp => {
    if (body instanceof Uint8Array) {
      if (options.framed === false) stream.send(body)
      else await lp.write(body, { signal })
    } else {
      await lp.write(dagCbor.encode(body), { signal })
    }
  })
}

/** A heads answer: { heads: { did: seq } }. */
function headsOf (a: Answer): Record<string, number> {
  assert.equal(a.end, 'eof')
  assert.equal(a.frames.length, 1)
  return (dagCbor.decode(a.frames[0]) as { heads: Record<string, number> }).heads
}

// ---------------------------------------------------------------- honest replication

describe('replication between real nodes', { timeout: 60_000 }, () => {
  const ENTRIES = 600
  let a: PeerverseNode
  let b: PeerverseNode
  let c: PeerverseNode

  before(async () => {
    ;[a, b, c] = await Promise.all([startNode(), startNode(), startNode()])
  })

  it(`a follower gets all ${ENTRIES} entries of a feed (over ${MAX_BATCH_ENTRIES} per batch), in order, with its timeline`, async () => {
    assert.ok(ENTRIES > 2 * MAX_BATCH_ENTRIES)
    for (let i = 1; i <= ENTRIES; i++) await a.social.post(`a says ${i}`)
    const aHead = await a.social.store.head(a.did)
    assert.equal(aHead?.seq, ENTRIES)
    await b.social.follow(a.did)
    await b.connect(a.addresses()[0], { signal: AbortSignal.timeout(STEP_MS) })
    // The connection's identify starts a sync; syncWith starts another if that one is over.
    await eventually('b holds a\'s feed', async () => (await b.social.store.head(a.did))?.seq === ENTRIES, { trigger: async () => await b.social.syncWith(a.net.peerId) })
    assert.equal((await b.social.store.head(a.did))?.id.toString(), aHead?.id.toString())
    assert.deepEqual(await heldBytes(b, a.did), await heldBytes(a, a.did))
    // The timeline, paged: every post of a, newest first, once.
    const texts: string[] = []
    let before: string | undefined
    while (true) {
      const page = await b.social.timeline({ limit: 200, before })
      if (page.length === 0) break
      texts.push(...page.map(i => i.text ?? ''))
      before = page.at(-1)?.cursor
    }
    assert.deepEqual(texts, Array.from({ length: ENTRIES }, (_, i) => `a says ${ENTRIES - i}`))
    assert.deepEqual(rejectionsOf(a, b.peerId), [])
    assert.deepEqual(rejectionsOf(b, a.peerId), [])
  })

  it('an author\'s entries reach a new follower from another follower while the author is offline', async () => {
    const last = await a.social.post('a says goodbye')
    await eventually('b holds a\'s last entry', async () => (await b.social.store.head(a.did))?.seq === ENTRIES + 1, { trigger: async () => await b.social.syncWith(a.net.peerId) })
    await a.stop()
    await c.social.follow(a.did)
    await c.connect(b.addresses()[0], { signal: AbortSignal.timeout(STEP_MS) })
    await eventually('c holds a\'s feed', async () => (await c.social.store.head(a.did))?.seq === ENTRIES + 1, { trigger: async () => await c.social.syncWith(b.net.peerId) })
    assert.equal((await c.social.store.head(a.did))?.id.toString(), last.id.toString())
    assert.deepEqual(await heldBytes(c, a.did), await heldBytes(b, a.did))
    assert.equal((await c.social.timeline({ limit: 1 }))[0].text, 'a says goodbye')
    assert.equal(c.net.getConnections(a.net.peerId).length, 0, 'c never reached a')
    assert.deepEqual(rejectionsOf(c, b.peerId), [])
  })
})

// ---------------------------------------------------------------- the server's limits

describe('the feeds server\'s limits against raw peers', { timeout: 60_000 }, () => {
  const x = keyOf(1)
  const HELD = 300
  let node: PeerverseNode
  let addr: Multiaddr
  let feed: Entry[]
  let attacker: Network
  let honest: Network
  let flooder: Network

  before(async () => {
    node = await startNode()
    addr = multiaddr(node.addresses()[0])
    feed = await buildFeed(x, HELD, Date.now() - 600_000, i => ['post', { text: `x ${i + 1}` }])
    await node.social.follow(didOf(x))
    for (const e of feed) assert.equal(await node.social.ingest(e.bytes), 'stored')
    ;[attacker, honest, flooder] = await Promise.all([newPeer(), newPeer(), newPeer()])
  })

  /** An honest exchange: heads, then a batch of entries, all valid and in order. */
  async function assertServes (peer: Network = honest): Promise<void> {
    assert.deepEqual(headsOf(await ask(peer, addr, { op: 'heads', dids: [didOf(x)] })), { [didOf(x)]: HELD })
    const a = await ask(peer, addr, { op: 'entries', did: didOf(x), from: 10, limit: 3 })
    assert.equal(a.end, 'eof')
    assert.deepEqual(a.frames.map(b64), feed.slice(9, 12).map(e => b64(e.bytes)))
  }

  it('answers heads and entries; an answer never holds more than `limit` entries', async () => {
    const unknown = didOf(keyOf(2))
    assert.deepEqual(headsOf(await ask(honest, addr, { op: 'heads', dids: [didOf(x), unknown, 'not even a did'] })), { [didOf(x)]: HELD })
    assert.deepEqual(headsOf(await ask(honest, addr, { op: 'heads', dids: [] })), {})
    for (const [from, limit, expected] of [
      [1, 1, 1], [3, 5, 5], [1, MAX_BATCH_ENTRIES, MAX_BATCH_ENTRIES], [HELD - 10, MAX_BATCH_ENTRIES, 11], [HELD, 7, 1], [HELD + 1, 5, 0], [1e12, 5, 0]
    ] as const) {
      const a = await ask(honest, addr, { op: 'entries', did: didOf(x), from, limit })
      assert.equal(a.end, 'eof', `from ${from} limit ${limit}`)
      assert.equal(a.frames.length, expected, `from ${from} limit ${limit}`)
      assert.ok(a.frames.length <= limit)
      const seqs = (await Promise.all(a.frames.map(decodeEntry))).map(e => e.payload.seq)
      assert.deepEqual(seqs, Array.from({ length: expected }, (_, i) => from + i))
    }
    assert.deepEqual((await ask(honest, addr, { op: 'entries', did: unknown, from: 1, limit: 5 })).frames, [])
    assert.deepEqual(rejectionsOf(node, honest.peerId), [])
  })

  it(`refuses an entries request for more than MAX_BATCH_ENTRIES (${MAX_BATCH_ENTRIES}) or a bad range: InvalidRequestError`, async () => {
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ op: 'entries', did: didOf(x), from: 1, limit: MAX_BATCH_ENTRIES + 1 }, /limit must be/],
      [{ op: 'entries', did: didOf(x), from: 1, limit: 0 }, /limit must be/],
      [{ op: 'entries', did: didOf(x), from: 1, limit: 2.5 }, /limit must be/],
      [{ op: 'entries', did: didOf(x), from: 0, limit: 5 }, /from must be/],
      [{ op: 'entries', did: didOf(x), from: -1, limit: 5 }, /from must be/],
      [{ op: 'entries', did: 42, from: 1, limit: 5 }, /did must be/],
      [{ op: 'entries', did: 'x'.repeat(200), from: 1, limit: 5 }, /did must be/]
    ]
    for (const [req, message] of cases) {
      const before = rejectionsOf(node, attacker.peerId).length
      const a = await ask(attacker, addr, req)
      assert.deepEqual(a.frames, [], JSON.stringify(req))
      assert.notEqual(a.end, 'eof', `${JSON.stringify(req)}: the stream is reset, not closed`)
      await eventually('the verdict', () => rejectionsOf(node, attacker.peerId).length > before)
      const v = rejectionsOf(node, attacker.peerId)[before]
      assert.equal(v.error.split(': ')[0], 'InvalidRequestError', v.error)
      assert.match(v.error, message)
    }
    await assertServes()
  })

  it(`takes MAX_HEADS_PER_REQUEST (${MAX_HEADS_PER_REQUEST}) dids in one heads request and refuses one more`, async () => {
    const dids = Array.from({ length: MAX_HEADS_PER_REQUEST }, (_, i) => didFromPublicKey(new Uint8Array(32).fill(i % 256).map((v, j) => j === 0 ? i >> 8 : v)))
    dids[0] = didOf(x)
    assert.equal(new Set(dids).size, MAX_HEADS_PER_REQUEST)
    assert.ok(dagCbor.encode({ op: 'heads', dids }).length <= MAX_REQUEST_BYTES, 'a full heads request fits in a frame')
    assert.deepEqual(headsOf(await ask(attacker, addr, { op: 'heads', dids })), { [didOf(x)]: HELD })
    const a = await ask(attacker, addr, { op: 'heads', dids: [...dids, didOf(keyOf(3))] })
    assert.deepEqual(a.frames, [])
    await verdict(node, attacker, 'InvalidRequestError', { message: new RegExp(`at most ${MAX_HEADS_PER_REQUEST}`) })
    await assertServes()
  })

  it(`reads a request frame of MAX_REQUEST_BYTES (${MAX_REQUEST_BYTES}) and refuses a longer one on its length`, async () => {
    // At the limit: read, and refused for what it says (a heads request with trailing bytes is not DAG-CBOR).
    const req = dagCbor.encode({ op: 'heads', dids: [didOf(x)] })
    const padded = new Uint8Array(MAX_REQUEST_BYTES)
    padded.set(req)
    let before = rejectionsOf(node, attacker.peerId).length
    await ask(attacker, addr, padded)
    await eventually('the verdict', () => rejectionsOf(node, attacker.peerId).length > before)
    assert.match(rejectionsOf(node, attacker.peerId)[before].error, /^InvalidRequestError: request is not DAG-CBOR/)
    // One byte over: refused on the length prefix.
    before = rejectionsOf(node, attacker.peerId).length
    const over = await ask(attacker, addr, new Uint8Array(MAX_REQUEST_BYTES + 1))
    assert.deepEqual(over.frames, [])
    await eventually('the verdict', () => rejectionsOf(node, attacker.peerId).length > before)
    assert.match(rejectionsOf(node, attacker.peerId)[before].error, /^InvalidDataLengthError: /)
    // A length prefix that never ends.
    before = rejectionsOf(node, attacker.peerId).length
    await ask(attacker, addr, new Uint8Array(16).fill(0x80), { framed: false })
    await eventually('the verdict', () => rejectionsOf(node, attacker.peerId).length > before)
    assert.match(rejectionsOf(node, attacker.peerId)[before].error, /^InvalidDataLengthLengthError: /)
    await assertServes()
  })

  it('refuses malformed requests: not DAG-CBOR, not a map, an unknown op', async () => {
    const cases: Array<[Uint8Array, RegExp]> = [
      [Uint8Array.of(0xff, 0x00, 0x13), /not DAG-CBOR/],
      [Uint8Array.of(0xa1), /not DAG-CBOR/],
      [new TextEncoder().encode('{"op":"heads","dids":[]}'), /not DAG-CBOR/],
      [dagCbor.encode('heads'), /must be a map/],
      [dagCbor.encode(null), /must be a map/],
      [dagCbor.encode({ op: 'delete', did: didOf(x) }), /unknown op/],
      [dagCbor.encode({ op: 'heads', dids: 'all' }), /dids must be/],
      [dagCbor.encode({ op: 'heads', dids: [1, 2] }), /dids must be/],
      [new Uint8Array(0), /not DAG-CBOR/]
    ]
    for (const [bytes, message] of cases) {
      const before = rejectionsOf(node, attacker.peerId).length
      const a = await ask(attacker, addr, bytes)
      assert.deepEqual(a.frames, [])
      await eventually('the verdict', () => rejectionsOf(node, attacker.peerId).length > before)
      const v = rejectionsOf(node, attacker.peerId)[before]
      assert.equal(v.error.split(': ')[0], 'InvalidRequestError', v.error)
      assert.match(v.error, message)
    }
    await assertServes()
  })

  it(`limits one peer to a burst of REQUEST_BURST (${REQUEST_BURST}) requests, then ${REQUESTS_PER_PEER_PER_SECOND} per second: ReplicationRateLimitError`, async t => {
    let answered = 0
    let end = 'eof'
    const start = performance.now()
    for (let i = 0; i < REQUEST_BURST * 3 && end === 'eof'; i++) {
      const a = await ask(flooder, addr, { op: 'heads', dids: [didOf(x)] })
      end = a.end
      if (a.end === 'eof') {
        assert.deepEqual(headsOf(a), { [didOf(x)]: HELD })
        answered++
      }
    }
    const seconds = (performance.now() - start) / 1000
    t.diagnostic(`${answered} requests answered in ${(seconds * 1000).toFixed(0)} ms before the refusal (${end})`)
    assert.notEqual(end, 'eof', 'never limited')
    await verdict(node, flooder, 'ReplicationRateLimitError')
    assert.ok(answered >= REQUEST_BURST, `only ${answered} answered`)
    assert.ok(answered <= REQUEST_BURST + REQUESTS_PER_PEER_PER_SECOND * seconds + 1, `${answered} answered in ${seconds} s`)
    // Still limited right after: of more requests back to back, only what the refill allows in the
    // time they took is answered (a bound from the measured time, so a slow machine cannot fail it);
    // the other peers are not limited.
    const again = performance.now()
    let more = 0
    for (let i = 0; i < 10; i++) if ((await ask(flooder, addr, { op: 'heads', dids: [didOf(x)] })).end === 'eof') more++
    const refill = REQUESTS_PER_PEER_PER_SECOND * (performance.now() - again) / 1000
    assert.ok(more <= Math.ceil(refill) + 1, `${more} of 10 answered with ${refill.toFixed(1)} tokens refilled`)
    await assertServes()
    // After a pause the bucket has refilled for a few.
    await delay(200)
    assert.deepEqual(headsOf(await ask(flooder, addr, { op: 'heads', dids: [didOf(x)] })), { [didOf(x)]: HELD })
  })

  it('serves a forked feed only up to the entry before the fork', async () => {
    const at = 250
    const other = await createEntry(x, headOf(feed[at - 2]), 'post', { text: 'x, the other branch' }, feed[at - 1].payload.ts)
    await assert.rejects(node.social.ingest(other.bytes), { name: 'ForkedFeedError' })
    assert.deepEqual(headsOf(await ask(honest, addr, { op: 'heads', dids: [didOf(x)] })), { [didOf(x)]: at - 1 })
    const a = await ask(honest, addr, { op: 'entries', did: didOf(x), from: at - 10, limit: 20 })
    assert.deepEqual(a.frames.map(b64), feed.slice(at - 11, at - 1).map(e => b64(e.bytes)))
    assert.deepEqual((await ask(honest, addr, { op: 'entries', did: didOf(x), from: at, limit: 5 })).frames, [])
    // Over the whole suite, the honest peer was never rejected.
    assert.deepEqual(rejectionsOf(node, honest.peerId), [])
  })
})

// ---------------------------------------------------------------- servers that lie

describe('a node pulling from a lying server', { timeout: 60_000 }, () => {
  const x = keyOf(4)
  const y = keyOf(5)
  const N = 40
  let node: PeerverseNode
  let liar: Network
  let feed: Entry[]
  let yFeed: Entry[]
  /** What the liar answers to an entries request, given the request. */
  let answer: (req: { did: string, from: number, limit: number }) => Uint8Array[]
  /** What the liar claims to hold. */
  let claim: () => number
  const requests: Array<Record<string, unknown>> = []

  before(async () => {
    node = await startNode()
    const t0 = Date.now() - 600_000
    feed = await buildFeed(x, N, t0, i => ['post', { text: `x ${i + 1}` }])
    yFeed = await buildFeed(y, 3, t0, i => ['post', { text: `y ${i + 1}` }])
    claim = () => N
    answer = () => []
    liar = await newPeer(['/ip4/127.0.0.1/tcp/0'])
    await liar.handle(FEEDS_PROTOCOL, stream => {
      void (async () => {
        const signal = AbortSignal.timeout(STEP_MS)
        const lp = lpStream(stream, { maxDataLength: MAX_REQUEST_BYTES })
        try {
          const req = dagCbor.decode((await lp.read({ signal })).subarray()) as Record<string, unknown>
          requests.push(req)
          if (req.op === 'heads') await lp.write(dagCbor.encode({ heads: { [didOf(x)]: claim() } }), { signal })
          else for (const bytes of answer(req as { did: string, from: number, limit: number })) await lp.write(bytes, { signal })
          await stream.close({ signal })
        } catch (err) {
          stream.abort(err as Error)
        }
      })()
    })
    await node.social.follow(didOf(x))
    await node.connect(liar.getMultiaddrs()[0].toString(), { signal: AbortSignal.timeout(STEP_MS) })
  })

  const sync = async (): Promise<unknown> => await node.social.syncWith(liar.peerId)
  const held = async (): Promise<number> => (await node.social.store.head(didOf(x)))?.seq ?? 0

  it('rejects a tampered entry (InvalidSignatureError) and stores nothing', async () => {
    answer = ({ from, limit }) => feed.slice(from - 1, from - 1 + limit).map((e, i) => {
      if (i !== 0) return e.bytes
      const bad = Uint8Array.from(e.bytes)
      bad[bad.length - 5] ^= 0x01 // in the payload: the signature no longer matches
      return bad
    })
    await verdict(node, liar, 'InvalidSignatureError', { trigger: sync })
    assert.equal(await held(), 0)
  })

  it('rejects an entry of another author than the one asked for (InvalidEntryError) and stores nothing', async () => {
    answer = ({ limit }) => yFeed.slice(0, limit).map(e => e.bytes)
    await verdict(node, liar, 'InvalidEntryError', { trigger: sync, message: /asked for/ })
    assert.equal(await held(), 0)
    assert.equal(await node.social.store.head(didOf(y)), null)
  })

  it('rejects entries out of order (SequenceGapError) and stores nothing', async () => {
    answer = ({ from, limit }) => {
      const batch = feed.slice(from - 1, from - 1 + limit).map(e => e.bytes)
      ;[batch[0], batch[1]] = [batch[1], batch[0]]
      return batch
    }
    await verdict(node, liar, 'SequenceGapError', { trigger: sync })
    assert.equal(await held(), 0)
  })

  it('rejects an entry with a wrong prev, signed by the author (WrongPreviousError), keeping the valid prefix', async () => {
    const bent = await createEntry(x, { ...headOf(feed[4]), id: feed[2].id }, 'post', { text: 'x 6, linked to 3' }, feed[5].payload.ts)
    answer = ({ from, limit }) => feed.slice(from - 1, from - 1 + limit).map(e => e.payload.seq === 6 ? bent.bytes : e.bytes)
    await verdict(node, liar, 'WrongPreviousError', { trigger: sync })
    assert.equal(await held(), 5)
    assert.deepEqual(await heldBytes(node, didOf(x)), feed.slice(0, 5).map(e => b64(e.bytes)))
  })

  it('completes its copy from the server once it answers honestly; every verdict named the liar', async () => {
    answer = ({ from, limit }) => feed.slice(from - 1, from - 1 + limit).map(e => e.bytes)
    await eventually('the node holds x\'s feed', async () => await held() === N, { trigger: sync })
    assert.deepEqual(await heldBytes(node, didOf(x)), feed.map(e => b64(e.bytes)))
    assert.deepEqual(node.social.lists().forked, [])
    const names = (rejections.get(node) ?? []).map(r => [r.peerId, r.error.split(': ')[0]])
    assert.ok(names.every(([p]) => p === liar.peerId.toString()), JSON.stringify(names))
    for (const name of ['InvalidSignatureError', 'InvalidEntryError', 'SequenceGapError', 'WrongPreviousError']) {
      assert.ok(names.some(([, n]) => n === name), `no ${name} verdict`)
    }
  })

  // syncWith (src/social/service.ts) loops while a batch returns `limit` frames, without checking
  // that any was stored: a server that claims a higher head and answers every request with entries
  // the node already holds ('duplicate') keeps the node asking for the same range forever.
  it('stops asking a server whose answers never advance the feed', async () => {
    claim = () => N + 10
    answer = ({ limit }) => {
      // Stop the loop after 30 rounds, so that the node is free again whatever it does.
      const rounds = requests.filter(r => r.op === 'entries' && r.from === N + 1).length
      return rounds > 30 ? [] : Array.from({ length: limit }, () => feed[0].bytes)
    }
    const before = requests.length
    await eventually('the node asked', () => requests.slice(before).some(r => r.op === 'entries'), { trigger: sync })
    await eventually('the node is done', () => requests.slice(before).filter(r => r.op === 'entries').length > 30 || rejectionsOf(node, liar.peerId).length > 4, { timeoutMs: 3_000 }).catch(() => {})
    const rounds = requests.slice(before).filter(r => r.op === 'entries').length
    assert.ok(rounds <= 2, `asked for entries ${N + 1}.. ${rounds} times`)
    assert.equal(await held(), N)
  })
})

// ---------------------------------------------------------------- feeds held for strangers

describe('the cap on feeds held for strangers', { timeout: 60_000 }, () => {
  const STRANGERS = MAX_STRANGER_FEEDS + 44
  const x = keyOf(6)
  let b: PeerverseNode
  let s: PeerverseNode
  let strangers: string[]
  let xFeed: Entry[]

  before(async () => {
    ;[b, s] = await Promise.all([startNode(), startNode()])
    const t0 = Date.now() - 600_000
    const keys = Array.from({ length: STRANGERS }, (_, i) => keyOf(9, i >> 8, i & 0xff))
    strangers = keys.map(didOf)
    // x follows every stranger, then posts; each stranger has a feed of one post.
    xFeed = await buildFeed(x, STRANGERS + 1, t0, i => i < STRANGERS ? ['follow', { did: strangers[i] }] : ['post', { text: 'x follows many' }])
    const strangerFeeds = await Promise.all(keys.map(async (k, i) => await createEntry(k, null, 'post', { text: `stranger ${i}` }, t0)))
    // The server s follows x and holds all of it.
    await s.social.follow(didOf(x))
    for (const e of xFeed) await s.social.ingest(e.bytes)
    for (const e of strangerFeeds) await s.social.ingest(e.bytes)
    assert.equal((await s.social.store.follows(didOf(x))).size, STRANGERS)
    // b follows x only, and gets x's feed (whose follows name the strangers) from s.
    await b.social.follow(didOf(x))
    await b.connect(s.addresses()[0], { signal: AbortSignal.timeout(STEP_MS) })
    await eventually('b holds x\'s feed', async () => (await b.social.store.head(didOf(x)))?.seq === STRANGERS + 1, { trigger: async () => await b.social.syncWith(s.net.peerId) })
  })

  // syncWith (src/social/service.ts) sends one entries request per feed, back to back, and the
  // server's token bucket (REQUEST_BURST 64, then 20/s) refuses the 65th or so: an honest node
  // replicating its follows and MAX_STRANGER_FEEDS (256) of theirs from one honest peer is rejected
  // as a flooder, and its sync stops there.
  it(`an honest node pulls ${MAX_STRANGER_FEEDS} strangers' feeds from an honest peer without being rate-limited`, async () => {
    await eventually(`b holds ${MAX_STRANGER_FEEDS} strangers' feeds`, async () => {
      const authors = await b.social.store.authors()
      return strangers.filter(d => authors.has(d)).length >= MAX_STRANGER_FEEDS
    }, { trigger: async () => await b.social.syncWith(s.net.peerId), timeoutMs: 4_000 }).catch(() => {})
    const refused = rejectionsOf(s, b.peerId)
    assert.equal(refused.length, 0, `s rejected b ${refused.length} times, first with ${refused[0]?.error}`)
    const authors = await b.social.store.authors()
    assert.equal(strangers.filter(d => authors.has(d)).length, MAX_STRANGER_FEEDS)
  })

  it(`asks for x and at most MAX_STRANGER_FEEDS (${MAX_STRANGER_FEEDS}) of the ${STRANGERS} feeds x follows, and holds no more`, async () => {
    // A raw peer that serves the feeds protocol, holds nothing, and records what b asks it for: b's
    // heads request names every feed b replicates (src/social/service.ts has no accessor for that set).
    const spy = await newPeer(['/ip4/127.0.0.1/tcp/0'])
    const asked: string[][] = []
    await spy.handle(FEEDS_PROTOCOL, stream => {
      void (async () => {
        const lp = lpStream(stream, { maxDataLength: MAX_REQUEST_BYTES })
        try {
          const req = dagCbor.decode((await lp.read({ signal: AbortSignal.timeout(STEP_MS) })).subarray()) as { op: string, dids?: string[] }
          if (req.op === 'heads') asked.push(req.dids ?? [])
          await lp.write(dagCbor.encode({ heads: {} }))
          await stream.close()
        } catch (err) {
          stream.abort(err as Error)
        }
      })()
    })
    await b.connect(spy.getMultiaddrs()[0].toString(), { signal: AbortSignal.timeout(STEP_MS) })
    const followed = new Set(strangers)
    const strangersIn = (dids: string[]): number => dids.filter(d => followed.has(d)).length
    // b's replicate set follows x's feed as it arrives; wait until a heads request names the full set.
    await eventually('a heads request naming x and the capped strangers', () => asked.some(d => strangersIn(d) === MAX_STRANGER_FEEDS), { trigger: async () => await b.social.syncWith(spy.peerId) })
    for (const dids of asked) {
      assert.ok(dids.includes(didOf(x)))
      assert.ok(!dids.includes(b.did), 'b does not ask for its own feed')
      assert.equal(new Set(dids).size, dids.length)
      assert.ok(dids.every(d => d === didOf(x) || followed.has(d)), 'only x and whom x follows')
      assert.ok(strangersIn(dids) <= MAX_STRANGER_FEEDS, `${strangersIn(dids)} strangers asked for`)
      assert.ok(dids.length <= 1 + MAX_STRANGER_FEEDS)
    }
    // Whatever it pulled from s (which serves all of them), b holds no more than the cap.
    await b.social.syncWith(s.net.peerId).catch(() => {})
    const authors = await b.social.store.authors()
    const held = strangers.filter(d => authors.has(d))
    assert.ok(held.length <= MAX_STRANGER_FEEDS, `${held.length} strangers held`)
    assert.ok([...authors.keys()].every(d => d === b.did || d === didOf(x) || followed.has(d)))
    assert.equal(authors.get(didOf(x))?.seq, STRANGERS + 1)
  })
})
