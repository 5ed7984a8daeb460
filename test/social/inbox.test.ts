/**
 * Replies and likes from people an author does not follow reach the author as notices to their
 * inbox (src/social/inbox.ts). Real nodes on 127.0.0.1: A posts; B, whom A does not follow,
 * replies and likes, and A's timeline shows the reply under the post and the like counted; C, who
 * is not connected to A and knows only the post's CID and A's did, finds A's inbox in the DHT.
 * Then `/peerverse/inbox/1.0.0` spoken by a raw peer: forged notices (bad signature, a reply to
 * someone else's entry, oversized, not a reply, another's profile sent along) get named errors and are never kept; a blocked
 * sender's notices are dropped; a sender past the rate limit is refused. Last, the inbox module
 * alone over a real LevelDB: the cap on notices kept and the per-peer rate limit.
 * Senders other than the nodes are test keys from fixed seeds.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import * as dagCbor from '@ipld/dag-cbor'
import type { Stream } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { CID } from 'multiformats/cid'
import { didFromPublicKey } from '../../src/identity/did.ts'
import { ed25519KeyFromSeed, type Ed25519Key } from '../../src/identity/ed25519.ts'
import { createEntry, type Entry, type EntryBody, type EntryKind, MAX_ENTRY_BYTES } from '../../src/social/feed.ts'
import {
  Inbox, INBOX_PROTOCOL, inboxKey, MAX_NOTICE_BYTES, MAX_NOTICES_PER_PEER_PER_MINUTE, MAX_NOTICES_PER_SENDER_PER_MINUTE,
  NoticeRateLimitError
} from '../../src/social/inbox.ts'
import type { FeedNoticeEvent, TimelineEntry } from '../../src/social/service.ts'
import { FeedStore } from '../../src/social/store.ts'
import { Store } from '../../src/store/store.ts'
import type { Network } from '../../src/net/network.ts'
import type { ProtocolPort } from '../../src/net/ports.ts'
import type { PeerverseNode, RejectedEvent } from '../../src/node/node.ts'
import { cleanups, tempDir } from '../helpers/cleanup.ts'
import { exchange, LocalPeers, waiter } from '../helpers/local-peers.ts'

/** How long any single step may take before the test fails instead of hanging. */
const STEP_MS = 30_000

const keyOf = (...seed: number[]): Ed25519Key => {
  const s = new Uint8Array(32).fill(11)
  s.set(seed)
  return ed25519KeyFromSeed(s)
}
const didOf = (key: Ed25519Key): string => didFromPublicKey(key.publicKey)

/** `n` entries of `key`'s feed made by `make(i)`, in order. */
async function entriesBy (key: Ed25519Key, n: number, make: (i: number) => [EntryKind, EntryBody]): Promise<Entry[]> {
  const out: Entry[] = []
  for (let i = 0; i < n; i++) {
    const [kind, body] = make(i)
    const last = out.at(-1)
    out.push(await createEntry(key, last == null ? null : { seq: last.payload.seq, id: last.id, ts: last.payload.ts }, kind, body, Date.now()))
  }
  return out
}

const peers = new LocalPeers('inbox')
const eventually = waiter({ timeoutMs: STEP_MS, intervalMs: 50 })
const addrOf = (node: PeerverseNode): string => node.net.getMultiaddrs()[0].toString()

/** Every `feed:notice` a node emitted. */
const notices = new Map<PeerverseNode, FeedNoticeEvent[]>()
function watchNotices (node: PeerverseNode): void {
  const log: FeedNoticeEvent[] = []
  notices.set(node, log)
  node.addEventListener('feed:notice', evt => { log.push(evt.detail) })
}
const noticeOf = (node: PeerverseNode, id: CID): FeedNoticeEvent | undefined => notices.get(node)?.find(n => n.id === id.toString())

async function timeline (node: PeerverseNode): Promise<TimelineEntry[]> {
  return await node.social.timeline({ limit: 200 })
}

/** One raw notice from `from` to `to`: the decoded answer, or how the exchange ended. */
async function send (from: Network, to: PeerverseNode, body: Uint8Array): Promise<{ result?: string, error?: string, end: string }> {
  const signal = AbortSignal.timeout(STEP_MS)
  const stream: Stream = await from.dialProtocol(multiaddr(addrOf(to)), INBOX_PROTOCOL, { signal })
  const answer = await exchange(stream, 4096, signal, async lp => { await lp.write(body, { signal }) })
  if (answer.frames.length === 0) return { end: answer.end }
  return { ...dagCbor.decode(answer.frames[0]) as { result?: string, error?: string }, end: answer.end }
}
const noticeBytes = (entry: Uint8Array): Uint8Array => dagCbor.encode({ entry })

const rejectionsOf = (node: PeerverseNode, peer: string): RejectedEvent[] => (peers.rejections.get(node) ?? []).filter(r => r.peerId === peer)

describe('replies and likes reach an author who does not follow the replier', { timeout: 240_000 }, () => {
  let a: PeerverseNode
  let b: PeerverseNode
  let c: PeerverseNode
  let post: Entry
  let raw: Network

  before(async () => {
    [a, b, c] = await Promise.all([peers.startNode(), peers.startNode(), peers.startNode()])
    for (const n of [a, b, c]) watchNotices(n)
    await b.connect(addrOf(a), { signal: AbortSignal.timeout(STEP_MS) })
    // C knows only B: A is found through the DHT.
    await c.connect(addrOf(b), { signal: AbortSignal.timeout(STEP_MS) })
    post = await a.social.post('hello from a')
    raw = await peers.newPeer()
  })

  after(async () => { await peers.stop() })

  it('a reply and a like from someone the author does not follow show under the post', async () => {
    await b.social.follow(a.did)
    await eventually('B holds A\'s post', async () => (await b.social.store.locate(post.id)) != null, { trigger: async () => await b.social.syncWith(a.net.peerId) })
    await b.social.setProfile({ name: 'bo' })
    const reply = await b.social.reply(post.id, 'hi a, from b')
    const like = await b.social.like(post.id)
    await eventually('both notices are stored', () => noticeOf(b, reply.id)?.result === 'stored' && noticeOf(b, like.id)?.result === 'stored')
    assert.ok(!a.social.following().includes(b.did), 'A does not follow B')
    assert.equal(await a.social.store.head(b.did), null, 'A holds none of B\'s feed')
    const seen = await timeline(a)
    const r = seen.find(e => e.id === reply.id.toString())
    assert.ok(r != null, 'B\'s reply is in A\'s timeline')
    assert.equal(r.author, b.did)
    assert.equal(r.to, post.id.toString())
    assert.equal(r.text, 'hi a, from b')
    assert.equal(r.name, 'bo', 'B\'s name came with the notice, in B\'s signed profile entry')
    assert.equal(seen.find(e => e.id === post.id.toString())?.likes, 1)
    // The same reply again is kept once; once A replicates B's feed too, it still shows once.
    assert.equal(await b.social.notify(reply), 'duplicate')
    await a.social.follow(b.did)
    await eventually('A holds B\'s reply from B\'s feed', async () => (await a.social.store.locate(reply.id)) != null, { trigger: async () => await a.social.syncWith(b.net.peerId) })
    const again = await timeline(a)
    assert.equal(again.filter(e => e.id === reply.id.toString()).length, 1)
    assert.equal(again.find(e => e.id === post.id.toString())?.likes, 1)
    await a.social.unfollow(b.did)
  })

  it('someone who knows only the post\'s CID and its author\'s did finds the author\'s inbox through the DHT', async () => {
    assert.equal(await c.social.store.locate(post.id), undefined, 'C does not hold A\'s post')
    // A announces its inbox key once it has peers; C finds A there.
    await eventually('C finds A\'s inbox in the DHT', async () => {
      for await (const p of c.routing.findProviders(inboxKey(a.did), { signal: AbortSignal.timeout(5_000) })) if (p.peer === a.net.peerId.toString()) return true
      return false
    })
    // The lookup may have connected C to A (the DHT dials what it finds): hang up, so the notice
    // goes where the DHT says rather than to a peer already bound to A.
    await c.protocols.hangUp(a.net.peerId.toString())
    const reply = await c.social.reply(post.id, 'hi a, from c', undefined, { author: a.did })
    await eventually('the notice is stored', () => noticeOf(c, reply.id) != null)
    assert.equal(noticeOf(c, reply.id)?.result, 'stored')
    const r = (await timeline(a)).find(e => e.id === reply.id.toString())
    assert.equal(r?.author, c.did)
    assert.equal(r?.to, post.id.toString())
  })

  it('forged notices are refused with named errors and never kept', async () => {
    const x = keyOf(1)
    const [good] = await entriesBy(x, 1, () => ['reply', { text: 'forged?', to: post.id }])
    const kept = await a.social.store.noticeCount()
    const bad = Uint8Array.from(good.bytes)
    bad[bad.length - 5] ^= 0x01 // in the payload: the signature no longer matches
    assert.equal((await send(raw, a, noticeBytes(bad))).error, 'InvalidSignatureError')
    // A reply to an entry that is not A's (B's post, which A does not even hold).
    const bPost = await b.social.post('b\'s own post')
    const [elsewhere] = await entriesBy(x, 1, () => ['reply', { text: 'to b', to: bPost.id }])
    assert.equal((await send(raw, a, noticeBytes(elsewhere.bytes))).error, 'NoticeTargetError')
    // Not a reply or like.
    const [plain] = await entriesBy(x, 1, () => ['post', { text: 'just a post' }])
    assert.equal((await send(raw, a, noticeBytes(plain.bytes))).error, 'InvalidNoticeError')
    // Oversized: an entry over the feed's limit, and a whole notice over MAX_NOTICE_BYTES.
    assert.equal((await send(raw, a, noticeBytes(new Uint8Array(MAX_ENTRY_BYTES + 1)))).error, 'NoticeTooLargeError')
    assert.equal((await send(raw, a, new Uint8Array(MAX_NOTICE_BYTES + 1))).error, 'NoticeTooLargeError')
    assert.equal((await send(raw, a, new Uint8Array([1, 2, 3]))).error, 'InvalidNoticeError')
    // A name sent along must be the sender's own profile entry.
    const [someoneElse] = await entriesBy(keyOf(5), 1, () => ['profile', { name: 'ada' }])
    assert.equal((await send(raw, a, dagCbor.encode({ entry: good.bytes, profile: someoneElse.bytes }))).error, 'InvalidNoticeError')
    const names = rejectionsOf(a, raw.peerId.toString()).map(r => r.error.split(': ')[0])
    for (const n of ['InvalidSignatureError', 'NoticeTargetError', 'InvalidNoticeError', 'NoticeTooLargeError']) assert.ok(names.includes(n), `${n} in ${names.join(', ')}`)
    assert.ok(rejectionsOf(a, raw.peerId.toString()).every(r => r.protocol === INBOX_PROTOCOL))
    assert.equal(await a.social.store.noticeCount(), kept, 'nothing was kept')
    // A goes on accepting honest notices.
    assert.equal((await send(raw, a, noticeBytes(good.bytes))).result, 'stored')
    assert.ok((await timeline(a)).some(e => e.id === good.id.toString()))
  })

  it('a blocked sender\'s notices are dropped, and blocking drops those kept', async () => {
    const y = keyOf(2)
    await a.social.setBlocked(didOf(y), true)
    const [reply, like] = await entriesBy(y, 2, i => i === 0 ? ['reply', { text: 'from a blocked sender', to: post.id }] : ['like', { of: post.id }])
    const kept = await a.social.store.noticeCount()
    const likes = (await timeline(a)).find(e => e.id === post.id.toString())?.likes
    assert.equal((await send(raw, a, noticeBytes(reply.bytes))).result, 'ignored')
    assert.equal((await send(raw, a, noticeBytes(like.bytes))).result, 'ignored')
    assert.equal(await a.social.store.noticeCount(), kept)
    assert.ok(!(await timeline(a)).some(e => e.author === didOf(y)))
    assert.equal((await timeline(a)).find(e => e.id === post.id.toString())?.likes, likes)
    // Blocking B now drops B's reply and like kept earlier.
    await a.social.setBlocked(b.did, true)
    const seen = await timeline(a)
    assert.ok(!seen.some(e => e.author === b.did))
    assert.equal(seen.find(e => e.id === post.id.toString())?.likes, (likes ?? 0) - 1)
    // B's real peer is told 'ignored' too.
    const late = await b.social.reply(post.id, 'after the block')
    await eventually('B hears back', () => noticeOf(b, late.id) != null)
    assert.equal(noticeOf(b, late.id)?.result, 'ignored')
    await a.social.setBlocked(b.did, false)
  })

  it(`a sender past ${MAX_NOTICES_PER_SENDER_PER_MINUTE} notices a minute is refused`, async () => {
    const z = keyOf(3)
    // The limit refills as a token bucket (one every 60/MAX s), so a few sends past it may pass;
    // all MAX pass, and sending three times as many is refused well before the end.
    const likes = await entriesBy(z, 3 * MAX_NOTICES_PER_SENDER_PER_MINUTE, () => ['like', { of: post.id }])
    let accepted = 0
    let refused: string | undefined
    for (const like of likes) {
      const answer = await send(raw, a, noticeBytes(like.bytes))
      if (answer.result === 'stored') { accepted++; continue }
      refused = answer.error
      break
    }
    assert.equal(refused, 'NoticeRateLimitError')
    assert.ok(accepted >= MAX_NOTICES_PER_SENDER_PER_MINUTE, `${accepted} accepted before the refusal`)
    assert.ok(rejectionsOf(a, raw.peerId.toString()).some(r => r.error.startsWith('NoticeRateLimitError')))
    // Another sender is not held back by it.
    const [other] = await entriesBy(keyOf(4), 1, () => ['like', { of: post.id }])
    assert.equal((await send(raw, a, noticeBytes(other.bytes))).result, 'stored')
  })
})

describe('the inbox alone, over a real LevelDB', () => {
  const me = keyOf(9)
  const noPorts = { peerId: 'me' } as unknown as ProtocolPort

  async function setup (t: Parameters<typeof cleanups>[0], maxEntries?: number, now?: () => number): Promise<{ inbox: Inbox, store: FeedStore, post: Entry }> {
    const defer = cleanups(t)
    const db = await Store.open(await tempDir(defer, 'inbox'))
    defer(async () => { await db.close() })
    const store = new FeedStore(db.sublevel('social'))
    const [post] = await entriesBy(me, 1, () => ['post', { text: 'mine' }])
    await store.append(post)
    const inbox = new Inbox({
      protocols: noPorts,
      onRejected: () => {},
      maxEntries,
      now,
      host: { did: didOf(me), store, isBlocked: () => false, isMuted: () => false, onStored: () => {} }
    })
    return { inbox, store, post }
  }

  it('keeps at most maxEntries notices, dropping the oldest', async t => {
    const cap = 5
    const { inbox, store, post } = await setup(t, cap)
    const replies: Entry[] = []
    for (let i = 0; i < cap + 3; i++) {
      replies.push(...await entriesBy(keyOf(20 + i), 1, () => ['reply', { text: `reply ${i}`, to: post.id }]))
      assert.equal(await inbox.receive(dagCbor.encode({ entry: replies[i].bytes }), 'peer'), 'stored')
    }
    assert.equal(await store.noticeCount(), cap)
    const left: string[] = []
    for await (const item of store.timeline({ include: () => false, includeNotice: () => true })) left.push((await store.notice(item.cursor))!.id.toString())
    assert.deepEqual(new Set(left), new Set(replies.slice(-cap).map(r => r.id.toString())))
  })

  it(`refuses a peer past ${MAX_NOTICES_PER_PEER_PER_MINUTE} notices a minute`, async t => {
    let now = 1_000_000
    const { inbox, post } = await setup(t, undefined, () => now)
    for (let i = 0; i < MAX_NOTICES_PER_PEER_PER_MINUTE; i++) {
      const [like] = await entriesBy(keyOf(40, i), 1, () => ['like', { of: post.id }])
      assert.equal(await inbox.receive(dagCbor.encode({ entry: like.bytes }), 'busy'), 'stored')
    }
    const [last] = await entriesBy(keyOf(41), 1, () => ['like', { of: post.id }])
    await assert.rejects(inbox.receive(dagCbor.encode({ entry: last.bytes }), 'busy'), NoticeRateLimitError)
    assert.equal(await inbox.receive(dagCbor.encode({ entry: last.bytes }), 'other'), 'stored')
    // A minute later the peer may send again.
    now += 60_000
    const [later] = await entriesBy(keyOf(42), 1, () => ['like', { of: post.id }])
    assert.equal(await inbox.receive(dagCbor.encode({ entry: later.bytes }), 'busy'), 'stored')
  })
})
