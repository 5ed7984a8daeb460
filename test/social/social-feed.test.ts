/**
 * Feeds without a second peer: the pure rules of src/social/feed.ts (every kind round-trips, every
 * bad body is refused by name, and fast-check properties over random mutations of a valid feed:
 * flipped bytes, reordering, forgery, wrong links, future dates, oversized entries), the FeedStore
 * over a real LevelDB (indexes, timeline paging, tombstones, likes, follows, dropFeed, reopen), and
 * the SocialService of one started node (posting, forks, mute, block, restart).
 * Keys come from fixed seeds and fast-check runs with seed 42, so a failure replays.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as dagCbor from '@ipld/dag-cbor'
import fc from 'fast-check'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { didFromPublicKey } from '../../src/identity/did.ts'
import { ed25519KeyFromSeed, ed25519Sign, type Ed25519Key } from '../../src/identity/ed25519.ts'
import { RECORD_VERSION, signRecord } from '../../src/identity/record.ts'
import {
  checkAppend, checkPayload, createEntry, decodeEntry, FEED_ENTRY_TYPE, followsOf, MAX_ATTACHMENTS, MAX_BIO_BYTES,
  MAX_CLOCK_SKEW_MS, MAX_ENTRY_BYTES, MAX_NAME_BYTES, MAX_SEQ, MAX_TEXT_BYTES, profileOf, sameEntry,
  type Entry, type EntryBody, type EntryKind, type EntryPayload, type FeedHead
} from '../../src/social/feed.ts'
import { feedTopic } from '../../src/social/service.ts'
import { FeedStore, type ForkEvidence } from '../../src/social/store.ts'
import { createNode, type PeerverseNode } from '../../src/node/node.ts'
import { defaultConfig, mergeConfig } from '../../src/node/config.ts'
import { Store } from '../../src/store/store.ts'
import { utf8 } from '../helpers/bytes.ts'
import { cleanups, tempDir } from '../helpers/cleanup.ts'

// ---------------------------------------------------------------- helpers

/** A test author's key from a fixed seed. */
const keyOf = (n: number): Ed25519Key => ed25519KeyFromSeed(new Uint8Array(32).fill(n))
const didOf = (key: Ed25519Key): string => didFromPublicKey(key.publicKey)
const b64 = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64')

async function contentCid (s: string): Promise<CID> {
  return CID.createV1(raw.code, await sha256.digest(utf8(s)))
}

const headOf = (e: Entry): FeedHead => ({ seq: e.payload.seq, id: e.id, ts: e.payload.ts })

/** A feed of `n` posts by `key`, one second apart from `t0`. */
async function postFeed (key: Ed25519Key, n: number, t0: number, label = 'post'): Promise<Entry[]> {
  const out: Entry[] = []
  let head: FeedHead | null = null
  for (let i = 0; i < n; i++) {
    const e = await createEntry(key, head, 'post', { text: `${label} ${i + 1}` }, t0 + i * 1000)
    out.push(e)
    head = headOf(e)
  }
  return out
}

/** Appends entries to a feed: createEntry after the last one, at `ts`. */
async function extend (key: Ed25519Key, feed: Entry[], kind: EntryKind, body: EntryBody, ts: number): Promise<Entry> {
  const last = feed.at(-1)
  const e = await createEntry(key, last == null ? null : headOf(last), kind, body, ts)
  feed.push(e)
  return e
}

/** What a peer does with an entry from outside: decode, check its place in its author's feed, append. */
async function deliver (store: FeedStore, bytes: Uint8Array, now: number): Promise<Entry> {
  const e = await decodeEntry(bytes)
  checkAppend(await store.head(e.author), e, now)
  await store.append(e)
  return e
}

/** A payload as plain data, for deepEqual (CIDs as strings). */
function plain (p: EntryPayload): unknown {
  return JSON.parse(JSON.stringify(p, (_k, v: unknown) => {
    const c = CID.asCID(v)
    return c != null ? { cid: c.toString() } : v
  }))
}

/** Signs `payload` under `author`'s name with `signer`'s key: the forger's move (the envelope format of record.ts). */
function forge (signer: Ed25519Key, author: string, payload: unknown): Uint8Array {
  const domain = utf8('peerverse/record/v1\n')
  const body = dagCbor.encode({ v: RECORD_VERSION, type: FEED_ENTRY_TYPE, author, payload })
  const toSign = new Uint8Array(domain.length + body.length)
  toSign.set(domain)
  toSign.set(body, domain.length)
  return dagCbor.encode({ v: RECORD_VERSION, type: FEED_ENTRY_TYPE, author, payload, sig: ed25519Sign(signer, toSign) })
}

/** Every name decodeEntry may throw: the identity errors and InvalidEntryError. */
const DECODE_ERRORS = new Set([
  'MalformedRecordError', 'NonCanonicalEncodingError', 'InvalidDidError', 'InvalidKeyError', 'InvalidSignatureError',
  'UnexpectedRecordTypeError', 'RecordTooLargeError', 'InvalidEntryError'
])

async function rejectsWithName (p: Promise<unknown>, names: Set<string> | string, what: string): Promise<string> {
  try {
    await p
  } catch (err) {
    const name = (err as Error).name
    if (typeof names === 'string') assert.equal(name, names, `${what}: ${(err as Error).message}`)
    else assert.ok(names.has(name), `${what}: unexpected ${name}: ${(err as Error).message}`)
    return name
  }
  assert.fail(`${what}: accepted`)
}

const T0 = 1_700_000_000_000
const NOW = T0 + 10 * 86_400_000
const alice = keyOf(1)
const bob = keyOf(2)
const carol = keyOf(3)
const mallory = keyOf(66)

// ---------------------------------------------------------------- pure rules

describe('feed entries: encoding and shape', () => {
  it('creates, decodes and appends an entry of every kind', async () => {
    const cidA = await contentCid('a')
    const cidB = await contentCid('b')
    const bodies: Array<[EntryKind, EntryBody]> = [
      ['profile', { name: 'Alice', bio: 'hello', avatar: cidA }],
      ['profile', {}],
      ['post', { text: 'first post' }],
      ['post', { text: 'with attachments', attachments: [cidA, cidB] }],
      ['reply', { text: 'a reply', to: cidB }],
      ['reply', { text: 'a reply with a picture', to: cidB, attachments: [cidA] }],
      ['like', { of: cidA }],
      ['follow', { did: didOf(bob) }],
      ['unfollow', { did: didOf(bob) }],
      ['delete', { of: cidB }]
    ]
    let head = null as FeedHead | null
    for (const [i, [kind, body]] of bodies.entries()) {
      const e = await createEntry(alice, head, kind, body, T0 + i)
      assert.equal(e.author, didOf(alice))
      assert.equal(e.payload.seq, i + 1)
      assert.equal(e.payload.prev?.toString() ?? null, head?.id.toString() ?? null)
      assert.ok(e.bytes.length <= MAX_ENTRY_BYTES)
      const d = await decodeEntry(e.bytes)
      assert.equal(d.author, e.author, kind)
      assert.equal(d.id.toString(), e.id.toString(), kind)
      assert.deepEqual(plain(d.payload), plain(e.payload), kind)
      checkAppend(head, d, T0 + i)
      head = headOf(d)
    }
    // A body field left undefined is dropped, not encoded.
    const e = await createEntry(alice, null, 'post', { text: 'x', attachments: undefined }, T0)
    assert.deepEqual(Object.keys(e.payload.body), ['text'])
    assert.equal((await decodeEntry(e.bytes)).id.toString(), e.id.toString())
    // The timestamp never goes backwards within a feed.
    const later = await createEntry(alice, { seq: 1, id: e.id, ts: T0 + 5000 }, 'post', { text: 'y' }, T0)
    assert.equal(later.payload.ts, T0 + 5000)
  })

  it('refuses bad payloads and bodies by name (InvalidEntryError)', async () => {
    const c = await contentCid('c')
    const ok = (kind: EntryKind, body: unknown, over: Partial<Record<keyof EntryPayload, unknown>> = {}): unknown =>
      ({ seq: 2, prev: c, ts: T0, kind, body, ...over })
    const bad: Array<[string, unknown]> = [
      ['payload null', null],
      ['payload a list', [1, 2]],
      ['payload a string', 'post'],
      ['an unknown payload field', { ...ok('post', { text: 'x' }) as object, extra: 1 }],
      ['seq 0', ok('post', { text: 'x' }, { seq: 0, prev: null })],
      ['seq -1', ok('post', { text: 'x' }, { seq: -1 })],
      ['seq 1.5', ok('post', { text: 'x' }, { seq: 1.5 })],
      ['seq a string', ok('post', { text: 'x' }, { seq: '2' })],
      ['seq over MAX_SEQ', ok('post', { text: 'x' }, { seq: MAX_SEQ + 1 })],
      ['prev on the first entry', ok('post', { text: 'x' }, { seq: 1, prev: c })],
      ['missing prev on a later entry', ok('post', { text: 'x' }, { prev: undefined })],
      ['null prev on a later entry', ok('post', { text: 'x' }, { prev: null })],
      ['prev a string', ok('post', { text: 'x' }, { prev: c.toString() })],
      ['ts negative', ok('post', { text: 'x' }, { ts: -1 })],
      ['ts fractional', ok('post', { text: 'x' }, { ts: 1.5 })],
      ['ts a string', ok('post', { text: 'x' }, { ts: String(T0) })],
      ['unknown kind', ok('repost' as EntryKind, { of: c })],
      ['kind missing', ok(undefined as unknown as EntryKind, { text: 'x' })],
      ['body a list', ok('post', ['x'])],
      ['body null', ok('post', null)],
      ['post without text', ok('post', {})],
      ['post with empty text', ok('post', { text: '' })],
      ['post with text a number', ok('post', { text: 42 })],
      [`post with text over ${MAX_TEXT_BYTES} bytes`, ok('post', { text: 'x'.repeat(MAX_TEXT_BYTES + 1) })],
      ['post with multi-byte text over the byte limit', ok('post', { text: 'é'.repeat(MAX_TEXT_BYTES / 2 + 1) })],
      [`post with ${MAX_ATTACHMENTS + 1} attachments`, ok('post', { text: 'x', attachments: Array(MAX_ATTACHMENTS + 1).fill(c) })],
      ['post with attachments not a list', ok('post', { text: 'x', attachments: c })],
      ['post with a string attachment', ok('post', { text: 'x', attachments: [c.toString()] })],
      ['post with an unknown field', ok('post', { text: 'x', to: c })],
      ['reply without to', ok('reply', { text: 'x' })],
      ['reply with to a string', ok('reply', { text: 'x', to: c.toString() })],
      [`reply with text over ${MAX_TEXT_BYTES} bytes`, ok('reply', { text: 'x'.repeat(MAX_TEXT_BYTES + 1), to: c })],
      ['reply with an unknown field', ok('reply', { text: 'x', to: c, of: c })],
      ['like without of', ok('like', {})],
      ['like of a string', ok('like', { of: 'bafy' })],
      ['like with an unknown field', ok('like', { of: c, text: 'x' })],
      ['delete without of', ok('delete', {})],
      ['delete of a number', ok('delete', { of: 1 })],
      ['follow without did', ok('follow', {})],
      ['follow of a did:web', ok('follow', { did: 'did:web:example.com' })],
      ['follow of a broken did:key', ok('follow', { did: 'did:key:z6Mkbroken' })],
      ['follow of a did:key of another key type', ok('follow', { did: 'did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme' })],
      ['follow with an unknown field', ok('follow', { did: didOf(bob), note: 'x' })],
      ['unfollow of a number', ok('unfollow', { did: 7 })],
      [`profile with a name over ${MAX_NAME_BYTES} bytes`, ok('profile', { name: 'n'.repeat(MAX_NAME_BYTES + 1) })],
      [`profile with a bio over ${MAX_BIO_BYTES} bytes`, ok('profile', { bio: 'b'.repeat(MAX_BIO_BYTES + 1) })],
      ['profile with a name a number', ok('profile', { name: 1 })],
      ['profile with an avatar not a CID', ok('profile', { avatar: 'https://example.com/a.png' })],
      ['profile with an unknown field', ok('profile', { name: 'x', website: 'x' })]
    ]
    for (const [what, payload] of bad) {
      assert.throws(() => { checkPayload(payload) }, { name: 'InvalidEntryError' }, what)
    }
    // At the limits: accepted.
    checkPayload(ok('post', { text: 'x'.repeat(MAX_TEXT_BYTES), attachments: Array(MAX_ATTACHMENTS).fill(c) }))
    checkPayload(ok('profile', { name: 'n'.repeat(MAX_NAME_BYTES), bio: 'b'.repeat(MAX_BIO_BYTES) }))
    checkPayload(ok('post', { text: 'x' }, { seq: MAX_SEQ }))
    checkPayload(ok('post', { text: 'x' }, { seq: 1, prev: null, ts: 0 }))

    // createEntry refuses the same bodies before signing anything.
    await assert.rejects(createEntry(alice, null, 'post', { text: 'x'.repeat(MAX_TEXT_BYTES + 1) }, T0), { name: 'InvalidEntryError' })
    await assert.rejects(createEntry(alice, null, 'follow', { did: 'did:web:x' }, T0), { name: 'InvalidEntryError' })
    await assert.rejects(createEntry(alice, null, 'post', { text: 'x', attachments: Array(MAX_ATTACHMENTS + 1).fill(c) }, T0), { name: 'InvalidEntryError' })

    // A signed record whose payload breaks the rules is refused on decode, by the same name.
    for (const payload of [
      { seq: 0, prev: null, ts: T0, kind: 'post', body: { text: 'x' } },
      { seq: 1, prev: c, ts: T0, kind: 'post', body: { text: 'x' } },
      { seq: 2, prev: null, ts: T0, kind: 'post', body: { text: 'x' } },
      { seq: 1, prev: null, ts: T0, kind: 'post', body: { text: 'x'.repeat(MAX_TEXT_BYTES + 1) } },
      { seq: 1, prev: null, ts: T0, kind: 'follow', body: { did: 'did:web:x' } }
    ]) {
      const signed = await signRecord(alice, FEED_ENTRY_TYPE, payload)
      await rejectsWithName(decodeEntry(signed.bytes), 'InvalidEntryError', JSON.stringify(payload).slice(0, 60))
    }
    // A valid record of another type is not an entry.
    const other = await signRecord(alice, 'peerverse/something-else', { seq: 1, prev: null, ts: T0, kind: 'post', body: { text: 'x' } })
    await rejectsWithName(decodeEntry(other.bytes), 'UnexpectedRecordTypeError', 'another record type')
  })

  it('checkAppend: the first entry starts a feed, each next one links to the head, gaps and replays are refused', async () => {
    const feed = await postFeed(alice, 4, T0)
    checkAppend(null, feed[0], NOW)
    assert.throws(() => { checkAppend(null, feed[1], NOW) }, { name: 'SequenceGapError' })
    checkAppend(headOf(feed[0]), feed[1], NOW)
    assert.throws(() => { checkAppend(headOf(feed[0]), feed[2], NOW) }, { name: 'SequenceGapError' }, 'a gap')
    assert.throws(() => { checkAppend(headOf(feed[2]), feed[2], NOW) }, { name: 'SequenceGapError' }, 'the head again')
    assert.throws(() => { checkAppend(headOf(feed[2]), feed[1], NOW) }, { name: 'SequenceGapError' }, 'an older entry')
    // The head's id must be the entry's prev.
    assert.throws(() => { checkAppend({ ...headOf(feed[1]), id: feed[0].id }, feed[2], NOW) }, { name: 'WrongPreviousError' })
    // sameEntry tells a replay from a fork.
    const fork = await createEntry(alice, headOf(feed[0]), 'post', { text: 'another second entry' }, T0 + 1000)
    assert.equal(sameEntry(feed[1].id, feed[1]), true)
    assert.equal(sameEntry(feed[1].id, fork), false)
  })

  it('followsOf and profileOf read a feed in order', () => {
    const [b, c] = [didOf(bob), didOf(carol)]
    const follows = followsOf([
      { kind: 'follow', body: { did: b } },
      { kind: 'post', body: { text: 'x' } },
      { kind: 'follow', body: { did: c } },
      { kind: 'unfollow', body: { did: b } },
      { kind: 'unfollow', body: { did: 'did:key:never-followed' } }
    ])
    assert.deepEqual([...follows], [c])
    assert.deepEqual(profileOf([
      { kind: 'profile', body: { name: 'A', bio: 'one' } },
      { kind: 'post', body: { text: 'x' } },
      { kind: 'profile', body: { bio: 'two' } }
    ]), { name: 'A', bio: 'two' })
  })
})

describe('feed entries: properties over random mutations of a valid feed', () => {
  const N = 12
  let feed: Entry[]
  before(async () => {
    feed = await postFeed(alice, N, T0)
  })

  it('any single-byte change to an entry is refused by decodeEntry, by name', async () => {
    const names = new Map<string, number>()
    await fc.assert(fc.asyncProperty(
      fc.integer({ min: 0, max: N - 1 }), fc.nat(), fc.integer({ min: 1, max: 255 }),
      async (i, at, xor) => {
        // A copy (the bytes may be a Buffer, whose slice() shares memory).
        const bytes = Uint8Array.from(feed[i].bytes)
        const pos = at % bytes.length
        bytes[pos] ^= xor
        const name = await rejectsWithName(decodeEntry(bytes), DECODE_ERRORS, `entry ${i + 1}, byte ${pos} ^ ${xor}`)
        names.set(name, (names.get(name) ?? 0) + 1)
      }
    ), { seed: 42, numRuns: 600 })
    // The signature catches what the encoding checks do not.
    assert.ok((names.get('InvalidSignatureError') ?? 0) > 0, JSON.stringify([...names]))
    // Unchanged, every entry still decodes.
    for (const e of feed) assert.equal((await decodeEntry(e.bytes)).id.toString(), e.id.toString())
  })

  it('delivered in any order to a fresh FeedStore, only ever stores a prefix in order; the rest is SequenceGapError', async t => {
    const defer = cleanups(t)
    const dir = await tempDir(defer, 'social')
    const store = await Store.open(dir)
    defer(async () => store.close())
    let run = 0
    await fc.assert(fc.asyncProperty(fc.shuffledSubarray(feed, { minLength: N, maxLength: N }), async order => {
      const fs = new FeedStore(store.sublevel(`run-${run++}`))
      let expected = 0
      let queue = order
      // Deliver the whole order, then redeliver what was refused, until all is stored.
      for (let pass = 0; queue.length > 0; pass++) {
        assert.ok(pass <= N, 'no progress')
        const refused: Entry[] = []
        for (const e of queue) {
          if (e.payload.seq === expected + 1) {
            await deliver(fs, e.bytes, NOW)
            expected++
          } else {
            await rejectsWithName(deliver(fs, e.bytes, NOW), 'SequenceGapError', `seq ${e.payload.seq} after ${expected}`)
            refused.push(e)
          }
          const head = await fs.head(didOf(alice))
          assert.equal(head?.seq ?? 0, expected)
          if (head != null) assert.equal(head.id.toString(), feed[expected - 1].id.toString())
        }
        queue = refused
      }
      const held = await fs.range(didOf(alice), 1, N + 5)
      assert.deepEqual(held.map(b64), feed.map(e => b64(e.bytes)))
      // Replaying any entry after the feed is whole is refused as well.
      await rejectsWithName(deliver(fs, order[0].bytes, NOW), 'SequenceGapError', 'a replay')
    }), { seed: 42, numRuns: 25 })
  })

  it('a forged entry (another key claiming the author or the position) never enters the author\'s feed', async t => {
    const defer = cleanups(t)
    const dir = await tempDir(defer, 'social')
    const store = await Store.open(dir)
    defer(async () => store.close())
    let run = 0
    await fc.assert(fc.asyncProperty(fc.integer({ min: 1, max: N }), fc.string({ minLength: 1, maxLength: 40 }), async (k, text) => {
      const fs = new FeedStore(store.sublevel(`forge-${run++}`))
      for (const e of feed.slice(0, k - 1)) await deliver(fs, e.bytes, NOW)
      const position = { seq: k, prev: k === 1 ? null : feed[k - 2].id, ts: T0 + k * 1000, kind: 'post' as const, body: { text } }
      // Alice's name, mallory's signature: refused on decode.
      await rejectsWithName(decodeEntry(forge(mallory, didOf(alice), position)), 'InvalidSignatureError', `forged seq ${k}`)
      // Alice's own entry k, re-signed by mallory under alice's name.
      await rejectsWithName(decodeEntry(forge(mallory, didOf(alice), feed[k - 1].payload)), 'InvalidSignatureError', `re-signed seq ${k}`)
      // Mallory's own record at alice's position: a valid entry of mallory's feed, never of alice's.
      const own = await signRecord(mallory, FEED_ENTRY_TYPE, position)
      if (k === 1) await deliver(fs, own.bytes, NOW)
      else await rejectsWithName(deliver(fs, own.bytes, NOW), 'SequenceGapError', `mallory's seq ${k}`)
      const head = await fs.head(didOf(alice))
      assert.equal(head?.seq ?? 0, k - 1)
      assert.equal((await fs.locate(own.cid))?.author ?? didOf(mallory), didOf(mallory))
      // Alice's true entry k still follows.
      await deliver(fs, feed[k - 1].bytes, NOW)
      assert.equal((await fs.head(didOf(alice)))?.id.toString(), feed[k - 1].id.toString())
    }), { seed: 42, numRuns: 30 })
  })

  it('an entry whose prev points anywhere but the head is WrongPreviousError', async () => {
    const elsewhere = fc.oneof(
      fc.integer({ min: 0, max: N - 1 }).map(j => ({ j })),
      fc.string({ maxLength: 16 }).map(s => ({ s }))
    )
    await fc.assert(fc.asyncProperty(fc.integer({ min: 2, max: N }), elsewhere, async (k, target) => {
      const prev = 'j' in target ? feed[target.j].id : await contentCid(target.s)
      fc.pre(!prev.equals(feed[k - 2].id))
      // Signed by alice herself: only the link is wrong.
      const e = await createEntry(alice, { seq: k - 1, id: prev, ts: T0 }, 'post', { text: 'misplaced' }, T0 + k * 1000)
      const decoded = await decodeEntry(e.bytes)
      assert.throws(() => { checkAppend(headOf(feed[k - 2]), decoded, NOW) }, { name: 'WrongPreviousError' })
    }), { seed: 42, numRuns: 100 })
  })

  it(`an entry dated more than MAX_CLOCK_SKEW_MS (${MAX_CLOCK_SKEW_MS} ms) ahead is FutureEntryError; within the skew it is accepted`, async () => {
    await fc.assert(fc.asyncProperty(
      fc.integer({ min: 1, max: N }),
      fc.oneof(fc.integer({ min: -MAX_CLOCK_SKEW_MS, max: MAX_CLOCK_SKEW_MS }), fc.integer({ min: MAX_CLOCK_SKEW_MS + 1, max: 100 * MAX_CLOCK_SKEW_MS }), fc.constantFrom(MAX_CLOCK_SKEW_MS, MAX_CLOCK_SKEW_MS + 1)),
      async (k, ahead) => {
        const head = k === 1 ? null : headOf(feed[k - 2])
        const e = await decodeEntry((await createEntry(alice, head, 'post', { text: 'when?' }, NOW + ahead)).bytes)
        if (ahead > MAX_CLOCK_SKEW_MS) assert.throws(() => { checkAppend(head, e, NOW) }, { name: 'FutureEntryError' }, `${ahead} ms ahead`)
        else checkAppend(head, e, NOW)
      }
    ), { seed: 42, numRuns: 200 })
  })

  it(`an entry over MAX_ENTRY_BYTES (${MAX_ENTRY_BYTES}) is RecordTooLargeError, before anything else is looked at`, async () => {
    // Sized exactly: the text's CBOR header is 3 bytes for any length in this range.
    const sized = async (size: number, k: number): Promise<Uint8Array> => {
      const payload = (len: number): EntryPayload => ({ seq: k, prev: k === 1 ? null : feed[k - 2].id, ts: T0, kind: 'post', body: { text: 'x'.repeat(len) } })
      const probe = (await signRecord(alice, FEED_ENTRY_TYPE, payload(MAX_TEXT_BYTES))).bytes.length
      const bytes = (await signRecord(alice, FEED_ENTRY_TYPE, payload(MAX_TEXT_BYTES + size - probe))).bytes
      assert.equal(bytes.length, size)
      return bytes
    }
    await fc.assert(fc.asyncProperty(fc.integer({ min: 1, max: N }), fc.integer({ min: 1, max: 3 * MAX_ENTRY_BYTES }), async (k, over) => {
      await rejectsWithName(decodeEntry(await sized(MAX_ENTRY_BYTES + over, k)), 'RecordTooLargeError', `${over} bytes over`)
    }), { seed: 42, numRuns: 40 })
    // At the limit exactly, the size passes and the text is what is refused.
    await rejectsWithName(decodeEntry(await sized(MAX_ENTRY_BYTES, 1)), 'InvalidEntryError', 'exactly at the limit')
    await rejectsWithName(decodeEntry(await sized(MAX_ENTRY_BYTES + 1, 1)), 'RecordTooLargeError', 'one byte over')
    // Even with a broken signature, the size is checked first.
    const big = Uint8Array.from(await sized(MAX_ENTRY_BYTES + 100, 1))
    big[big.length - 1] ^= 1
    await rejectsWithName(decodeEntry(big), 'RecordTooLargeError', 'oversized and tampered')
  })
})

// ---------------------------------------------------------------- the feed store

describe('FeedStore over a real LevelDB', () => {
  /** Everything observable about a store, as plain data (compared before and after a reopen). */
  async function snapshot (fs: FeedStore, dids: string[], ids: CID[]): Promise<unknown> {
    const timeline: string[] = []
    for await (const item of fs.timeline({ include: () => true })) timeline.push(`${item.ts}/${item.author}/${item.seq}`)
    const authors = [...(await fs.authors())].map(([d, h]) => [d, h.seq, h.id.toString(), h.ts]).sort()
    const out: Record<string, unknown> = { timeline, authors }
    for (const d of dids) {
      out[`follows ${d}`] = [...await fs.follows(d)].sort()
      out[`range ${d}`] = (await fs.range(d, 1, 1000)).map(b64)
      out[`fork ${d}`] = await fs.fork(d)
    }
    for (const id of ids) {
      out[`id ${id.toString()}`] = [await fs.locate(id), await fs.isDeleted(id), await fs.likes(id)]
    }
    out.muted = [...await fs.listed('mute')].sort()
    out.blocked = [...await fs.listed('block')].sort()
    return out
  }

  it('appends, indexes, pages the timeline, keeps tombstones, likes and follows, drops feeds, and survives a reopen', async t => {
    const defer = cleanups(t)
    const dir = await tempDir(defer, 'social')
    let store = await Store.open(dir)
    defer(async () => store.close())
    let fs = new FeedStore(store.sublevel('social'))
    const [a, b, c] = [alice, bob, carol].map(didOf)

    // Three authors, posts interleaved in time (alice at T0+0, 3, 6 s; bob at T0+1, 4, 7 s; carol once at the same ms as bob's first).
    const fa: Entry[] = []
    const fb: Entry[] = []
    const fc_: Entry[] = []
    for (let i = 0; i < 3; i++) {
      await extend(alice, fa, 'post', { text: `alice ${i}` }, T0 + i * 3000)
      await extend(bob, fb, 'post', { text: `bob ${i}` }, T0 + i * 3000 + 1000)
    }
    await extend(carol, fc_, 'post', { text: 'carol' }, T0 + 1000)
    const r = await extend(bob, fb, 'reply', { text: 'bob replies', to: fa[0].id }, T0 + 20_000)
    await extend(bob, fb, 'like', { of: fa[0].id }, T0 + 21_000)
    await extend(carol, fc_, 'like', { of: fa[0].id }, T0 + 21_000)
    await extend(carol, fc_, 'like', { of: fa[0].id }, T0 + 21_500) // carol again: one author, one like
    await extend(alice, fa, 'delete', { of: fa[1].id }, T0 + 22_000) // her own: a tombstone
    await extend(bob, fb, 'delete', { of: fa[2].id }, T0 + 23_000) // not his: no tombstone
    await extend(alice, fa, 'follow', { did: b }, T0 + 24_000)
    await extend(alice, fa, 'follow', { did: c }, T0 + 25_000)
    await extend(alice, fa, 'unfollow', { did: b }, T0 + 26_000)
    await extend(bob, fb, 'follow', { did: a }, T0 + 27_000)
    for (const e of [...fa, ...fb, ...fc_]) await deliver(fs, e.bytes, NOW)

    for (const [did, feed] of [[a, fa], [b, fb], [c, fc_]] as const) {
      const head = await fs.head(did)
      assert.equal(head?.seq, feed.length)
      assert.equal(head?.id.toString(), feed.at(-1)?.id.toString())
      assert.equal(head?.ts, feed.at(-1)?.payload.ts)
      assert.deepEqual((await fs.range(did, 1, 100)).map(b64), feed.map(e => b64(e.bytes)))
      for (const e of feed) {
        assert.deepEqual(await fs.locate(e.id), { author: did, seq: e.payload.seq })
        assert.equal((await fs.get(did, e.payload.seq))?.id.toString(), e.id.toString())
      }
    }
    assert.equal(await fs.head(didOf(mallory)), null)
    assert.equal(await fs.get(a, 99), undefined)
    assert.equal(await fs.locate(await contentCid('nowhere')), undefined)
    // range: from, limit, and nothing of another author whose did shares a prefix.
    assert.deepEqual((await fs.range(a, 3, 2)).map(b64), fa.slice(2, 4).map(e => b64(e.bytes)))
    assert.deepEqual(await fs.range(a, fa.length + 1, 10), [])

    // The timeline: posts and replies only, newest first (ties by author and seq, descending).
    const posts = [...fa, ...fb, ...fc_].filter(e => e.payload.kind === 'post' || e.payload.kind === 'reply')
    const expected = posts
      .map(e => ({ ts: e.payload.ts, author: e.author, seq: e.payload.seq }))
      .sort((x, y) => y.ts - x.ts || (y.author < x.author ? -1 : y.author > x.author ? 1 : 0) || y.seq - x.seq)
    const all = []
    for await (const item of fs.timeline({ include: () => true })) all.push({ ts: item.ts, author: item.author, seq: item.seq })
    assert.deepEqual(all, expected)
    assert.equal(all[0].seq, r.payload.seq, 'the reply is newest')
    // Paging with `before`: each page starts right after the last cursor; together they are the timeline, once.
    for (const size of [1, 2, 3, 5]) {
      const paged: Array<{ ts: number, author: string, seq: number }> = []
      let before: string | undefined
      while (true) {
        const page = []
        for await (const item of fs.timeline({ before, include: () => true })) {
          page.push(item)
          if (page.length === size) break
        }
        if (page.length === 0) break
        paged.push(...page.map(i => ({ ts: i.ts, author: i.author, seq: i.seq })))
        before = page.at(-1)?.cursor
      }
      assert.deepEqual(paged, expected, `pages of ${size}`)
    }
    // include filters authors.
    const onlyBob = []
    for await (const item of fs.timeline({ include: d => d === b })) onlyBob.push(item.author)
    assert.deepEqual(onlyBob, Array(4).fill(b))

    // Tombstones count only for the deleter's own entries.
    assert.equal(await fs.isDeleted(fa[1].id), true)
    assert.equal(await fs.isDeleted(fa[2].id), false)
    assert.equal(await fs.isDeleted(fa[0].id), false)
    // Likes: one per author.
    assert.equal(await fs.likes(fa[0].id), 2)
    assert.equal(await fs.likes(fa[1].id), 0)
    // Follows, as each feed says.
    assert.deepEqual([...await fs.follows(a)], [c])
    assert.deepEqual([...await fs.follows(b)], [a])
    assert.deepEqual([...await fs.follows(a)], [...followsOf(fa.map(e => e.payload))])
    assert.deepEqual([...await fs.follows(c)], [])

    // Fork evidence and the local lists.
    const evidence: ForkEvidence = { author: c, seq: 1, held: b64(fc_[0].bytes), other: 'AAAA', at: T0 }
    await fs.recordFork(evidence)
    assert.deepEqual(await fs.fork(c), evidence)
    assert.deepEqual(await fs.forks(), [evidence])
    assert.equal(await fs.fork(a), undefined)
    await fs.setListed('mute', b, true)
    await fs.setListed('block', didOf(mallory), true)
    await fs.setListed('block', c, true)
    await fs.setListed('block', c, false)
    assert.deepEqual([...await fs.listed('mute')], [b])
    assert.deepEqual([...await fs.listed('block')], [didOf(mallory)])

    // Everything survives closing and reopening the store.
    const ids = [...fa, ...fb, ...fc_].map(e => e.id)
    const before1 = await snapshot(fs, [a, b, c], ids)
    await store.close()
    store = await Store.open(dir)
    fs = new FeedStore(store.sublevel('social'))
    assert.deepEqual(await snapshot(fs, [a, b, c], ids), before1)
    // ... and appends go on from the stored head.
    const next = await extend(alice, fa, 'post', { text: 'after the restart' }, T0 + 30_000)
    await rejectsWithName(deliver(fs, fa[2].bytes, NOW), 'SequenceGapError', 'an old entry after the restart')
    await deliver(fs, next.bytes, NOW)
    assert.equal((await fs.head(a))?.seq, fa.length)

    // dropFeed removes every trace of one author and nothing of the others.
    await fs.dropFeed(b)
    assert.equal(await fs.head(b), null)
    assert.deepEqual(await fs.range(b, 1, 100), [])
    for (const e of fb) assert.equal(await fs.locate(e.id), undefined)
    assert.deepEqual([...await fs.follows(b)], [])
    assert.equal(await fs.likes(fa[0].id), 1, 'bob\'s like is gone, carol\'s stays')
    const left = []
    for await (const item of fs.timeline({ include: () => true })) left.push(item.author)
    assert.ok(!left.includes(b))
    assert.equal(left.length, posts.length - 4 + 1)
    assert.ok(!(await fs.authors()).has(b))
    assert.equal((await fs.head(a))?.seq, fa.length)
    assert.equal((await fs.head(c))?.seq, fc_.length)
    // Dropping a feed we do not hold is a no-op; a dropped feed starts again from seq 1.
    await fs.dropFeed(didOf(mallory))
    await rejectsWithName(deliver(fs, fb[3].bytes, NOW), 'SequenceGapError', 'bob mid-feed after the drop')
    await deliver(fs, fb[0].bytes, NOW)
    assert.equal((await fs.head(b))?.seq, 1)
    // The drop survives a reopen too.
    await fs.dropFeed(b)
    const before2 = await snapshot(fs, [a, b, c], ids)
    await store.close()
    store = await Store.open(dir)
    fs = new FeedStore(store.sublevel('social'))
    assert.deepEqual(await snapshot(fs, [a, b, c], ids), before2)
  })
})

// ---------------------------------------------------------------- the service on a real node

describe('SocialService on a started node', { timeout: 60_000 }, () => {
  let dir: string
  let node: PeerverseNode
  const forks: Array<{ author: string, seq: number }> = []
  // Authors the node follows or meets, whose feeds are built here and handed to ingest().
  const x = keyOf(10)
  const y = keyOf(11)
  const stranger = keyOf(12)
  const fx: Entry[] = []
  const fy: Entry[] = []
  let t0: number
  let mine: { first: Entry, second: Entry, reply: Entry, gone: Entry }

  async function open (): Promise<PeerverseNode> {
    const n = await createNode(mergeConfig(defaultConfig(dir), { discovery: { mdns: false }, listen: ['/ip4/127.0.0.1/tcp/0'], api: false, dht: { mode: 'server' }, relay: { server: false } }))
    n.addEventListener('feed:fork', evt => { forks.push(evt.detail) })
    await n.start()
    return n
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'peerverse-social-node-'))
    node = await open()
    t0 = Date.now() - 60_000
  })

  after(async () => {
    await node?.stop()
    if (dir != null) await rm(dir, { recursive: true, force: true })
  })

  const ids = (items: Array<{ id: string }>): string[] => items.map(i => i.id)

  it('posts, replies, likes, deletes and sets a profile; the timeline shows what is left, newest first', async () => {
    await node.social.setProfile({ name: 'Node', bio: 'testing' })
    const first = await node.social.post('first')
    const second = await node.social.post('second', [await contentCid('pic')])
    const reply = await node.social.reply(first.id, 'answering myself')
    const gone = await node.social.post('to be deleted')
    await node.social.like(first.id)
    mine = { first, second, reply, gone }
    assert.equal((await node.social.store.head(node.did))?.seq, 6)
    let tl = await node.social.timeline()
    assert.deepEqual(ids(tl), [gone, reply, second, first].map(e => e.id.toString()))
    assert.equal(tl[1].kind, 'reply')
    assert.equal(tl[1].to, first.id.toString())
    assert.deepEqual(tl[2].attachments, [(await contentCid('pic')).toString()])
    assert.equal(tl[3].likes, 1)
    assert.ok(tl.every(i => i.name === 'Node' && i.author === node.did))

    const del = await node.social.remove(gone.id)
    assert.equal(del.payload.kind, 'delete')
    tl = await node.social.timeline()
    assert.deepEqual(ids(tl), [reply, second, first].map(e => e.id.toString()))
    assert.equal(await node.social.store.isDeleted(gone.id), true)
    // Paging: limit and before.
    const page1 = await node.social.timeline({ limit: 2 })
    const page2 = await node.social.timeline({ limit: 2, before: page1.at(-1)?.cursor })
    assert.deepEqual([...ids(page1), ...ids(page2)], ids(tl))

    const p = await node.social.profile(node.did)
    assert.equal(p.name, 'Node')
    assert.equal(p.bio, 'testing')
    assert.equal(p.entries, 7)
    assert.equal(p.forked, false)
    // Our own entries come back through entries(), verified.
    const own = await node.social.entries(node.did, { from: 2, limit: 2 })
    assert.deepEqual(own.map(e => e.id.toString()), [first.id.toString(), second.id.toString()])
  })

  it('follows and unfollows; a followed author\'s ingested posts join the timeline, an unfollowed one\'s leave it', async () => {
    const [dx, dy] = [didOf(x), didOf(y)]
    await node.social.follow(dx)
    await node.social.follow(dy)
    assert.deepEqual(node.social.following().sort(), [dx, dy].sort())
    await assert.rejects(node.social.follow(node.did), { name: 'InvalidEntryError' })
    await assert.rejects(node.social.follow('did:web:example.com'), { name: 'InvalidEntryError' })

    await extend(x, fx, 'profile', { name: 'Xavier' }, t0)
    await extend(x, fx, 'post', { text: 'x one' }, t0 + 1000)
    await extend(x, fx, 'post', { text: 'x two' }, t0 + 2000)
    await extend(x, fx, 'like', { of: mine.first.id }, t0 + 3000)
    await extend(y, fy, 'post', { text: 'y one' }, t0 + 1500)
    for (const e of [...fx, ...fy]) assert.equal(await node.social.ingest(e.bytes), 'stored')
    assert.equal(await node.social.ingest(fx[1].bytes), 'duplicate')
    const gap = await createEntry(y, { seq: 5, id: fy[0].id, ts: t0 }, 'post', { text: 'seq 6 of y, after a gap' }, t0)
    await assert.rejects(node.social.ingest(gap.bytes), { name: 'SequenceGapError' })
    assert.equal((await node.social.store.head(didOf(y)))?.seq, 1)

    const tl = await node.social.timeline()
    const theirs = tl.filter(i => i.author !== node.did)
    assert.deepEqual(theirs.map(i => i.text), ['x two', 'y one', 'x one'])
    assert.equal(theirs[0].name, 'Xavier')
    assert.equal(tl.find(i => i.id === mine.first.id.toString())?.likes, 2)
    assert.equal((await node.social.profile(dx)).name, 'Xavier')

    await node.social.unfollow(dy)
    assert.deepEqual(node.social.following(), [dx])
    assert.ok(!(await node.social.timeline()).some(i => i.author === dy), 'an unfollowed author leaves the timeline')
    assert.equal((await node.social.store.head(dy))?.seq, 1, 'but stays stored')
    assert.deepEqual([...await node.social.store.follows(node.did)], [dx])
    await node.social.follow(dy)
    assert.ok((await node.social.timeline()).some(i => i.author === dy))
    // Deleting another author's entry is refused.
    await assert.rejects(node.social.remove(fx[1].id), { name: 'InvalidEntryError' })
  })

  it('a fork (two entries of one author at one seq) is ForkedFeedError: evidence kept, author flagged, nothing more accepted', async () => {
    const dx = didOf(x)
    const held = fx[1] // seq 2
    const other = await createEntry(x, headOf(fx[0]), 'post', { text: 'x two, told differently' }, t0 + 1000)
    assert.equal(other.payload.seq, held.payload.seq)
    await assert.rejects(node.social.ingest(other.bytes), { name: 'ForkedFeedError' })
    assert.deepEqual(node.social.lists().forked, [dx])
    const evidence = await node.social.store.fork(dx)
    assert.equal(evidence?.author, dx)
    assert.equal(evidence?.seq, 2)
    assert.equal(evidence?.held, b64(held.bytes))
    assert.equal(evidence?.other, b64(other.bytes))
    assert.deepEqual(forks, [{ author: dx, seq: 2 }])
    // The evidence proves itself: both entries decode, same author, same seq, different ids.
    const [h, o] = await Promise.all([evidence?.held, evidence?.other].map(async s => await decodeEntry(Uint8Array.from(Buffer.from(s ?? '', 'base64')))))
    assert.equal(h.author, o.author)
    assert.equal(h.payload.seq, o.payload.seq)
    assert.notEqual(h.id.toString(), o.id.toString())
    // Past the fork, the author's entries are ignored: the next of either branch, or a replay.
    const next = await extend(x, fx, 'post', { text: 'x after the fork' }, t0 + 4000)
    assert.equal(await node.social.ingest(next.bytes), 'ignored')
    assert.equal(await node.social.ingest(other.bytes), 'ignored')
    assert.equal((await node.social.store.head(dx))?.seq, 4)
    assert.equal((await node.social.profile(dx)).forked, true)
    // A forged "fork" (another key, x's name) is not a fork: it does not decode.
    await assert.rejects(node.social.ingest(forge(mallory, dx, other.payload)), { name: 'InvalidSignatureError' })
    assert.deepEqual(node.social.lists().forked, [dx])
  })

  it('mute hides an author from the timeline but keeps the feed; block drops it and ignores new entries', async () => {
    const dy = didOf(y)
    await node.social.setMuted(dy, true)
    assert.equal(node.social.isMuted(dy), true)
    assert.deepEqual(node.social.lists().muted, [dy])
    assert.ok(!(await node.social.timeline()).some(i => i.author === dy))
    assert.equal((await node.social.store.head(dy))?.seq, 1)
    const more = await extend(y, fy, 'post', { text: 'y two, while muted' }, t0 + 5000)
    assert.equal(await node.social.ingest(more.bytes), 'stored', 'a muted feed is still replicated')
    assert.ok(!(await node.social.timeline()).some(i => i.author === dy))
    await node.social.setMuted(dy, false)
    assert.deepEqual((await node.social.timeline()).filter(i => i.author === dy).map(i => i.text), ['y two, while muted', 'y one'])

    await node.social.setBlocked(dy, true)
    assert.equal(node.social.isBlocked(dy), true)
    assert.deepEqual(node.social.lists().blocked, [dy])
    assert.equal(await node.social.store.head(dy), null)
    assert.deepEqual(await node.social.store.range(dy, 1, 10), [])
    assert.ok(!(await node.social.timeline()).some(i => i.author === dy))
    const after = await extend(y, fy, 'post', { text: 'y three, while blocked' }, t0 + 6000)
    assert.equal(await node.social.ingest(fy[0].bytes), 'ignored')
    assert.equal(await node.social.ingest(after.bytes), 'ignored')
    assert.equal(await node.social.store.head(dy), null)
    await assert.rejects(node.social.setMuted('not a did', true), { name: 'InvalidEntryError' })
  })

  it('restart keeps the feeds, the timeline, the follows, the lists and the fork flag', async () => {
    const dx = didOf(x)
    const dy = didOf(y)
    const timeline = await node.social.timeline({ limit: 200 })
    const following = node.social.following().sort()
    const lists = node.social.lists()
    const heads = [...await node.social.store.authors()].map(([d, h]) => [d, h.seq, h.id.toString()]).sort()
    const profile = await node.social.profile(node.did)
    await node.stop()
    node = await open()
    assert.deepEqual(await node.social.timeline({ limit: 200 }), timeline)
    assert.deepEqual(node.social.following().sort(), following)
    assert.deepEqual(node.social.lists(), lists)
    assert.deepEqual([...await node.social.store.authors()].map(([d, h]) => [d, h.seq, h.id.toString()]).sort(), heads)
    assert.deepEqual(await node.social.profile(node.did), profile)
    assert.equal((await node.social.profile(dx)).forked, true)
    assert.equal((await node.social.store.fork(dx))?.seq, 2)
    assert.ok(!timeline.some(i => i.id === mine.gone.id.toString()), 'the deleted post stays hidden')
    // The flags still act: x is ignored (forked), y is ignored (blocked), our feed goes on.
    assert.equal(await node.social.ingest((await extend(x, fx, 'post', { text: 'x later' }, t0 + 7000)).bytes), 'ignored')
    assert.equal(await node.social.ingest(fy[0].bytes), 'ignored')
    assert.equal(node.social.isBlocked(dy), true)
    const next = await node.social.post('after the restart')
    assert.equal(next.payload.seq, (profile.entries) + 1)
    assert.equal((await node.social.timeline({ limit: 1 }))[0].id, next.id.toString())
  })

  // SocialService.profile (src/social/service.ts) returns the body of the latest profile entry
  // alone, while profileOf (src/social/feed.ts) merges them in order ("later fields override
  // earlier ones"); a profile entry that sets only the bio loses the name.
  it('profile() merges profile entries in order, as profileOf says', async () => {
    await node.social.setProfile({ bio: 'a new bio' })
    const p = await node.social.profile(node.did)
    assert.equal(p.bio, 'a new bio')
    assert.equal(p.name, 'Node')
  })

  // ingest() says it returns 'ignored' for authors we do not replicate, and the stranger cap depends
  // on it, but it only checks blocked, forked and self (src/social/service.ts, ingest).
  it('ingest() ignores an author the node does not replicate', async () => {
    const e = await createEntry(stranger, null, 'post', { text: 'from nobody we follow' }, t0)
    assert.equal(await node.social.ingest(e.bytes), 'ignored')
    assert.equal(await node.social.store.head(didOf(stranger)), null)
  })

  // onGossip (src/social/service.ts) ingests whatever entry arrives on a followed author's topic,
  // without checking that its author is the topic's author.
  it('a gossip message on a followed author\'s topic carrying another author\'s entry is not stored', async () => {
    const e = await createEntry(keyOf(13), null, 'post', { text: 'smuggled onto x\'s topic' }, t0)
    await node.social.onGossip(feedTopic(didOf(x)), node.peerId, e.bytes)
    assert.equal(await node.social.store.head(didOf(keyOf(13))), null)
  })
})
