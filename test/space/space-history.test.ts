/**
 * What a flood of fresh identities can do to a space's chat, as pure logic and one part on a real
 * store: the history model (history.ts: known authors apart from newcomers, a fair share each,
 * promotion after probation), the admission proof (admission.ts), and the chat part's limits per
 * signing peer and per peer a newcomer's message came through (chat.ts, on a real LevelDB, with a
 * stub for the gossip it publishes on). Every named limit is gone past.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { didFromPublicKey } from '../../src/identity/did.ts'
import { ed25519KeyFromSeed, type Ed25519Key } from '../../src/identity/ed25519.ts'
import { TokenBuckets } from '../../src/net/rate-limit.ts'
import {
  ADMISSION_NONCE_BYTES, AdmissionRequiredError, checkAdmission, InvalidAdmissionError, isAdmitted, solveAdmission, SPACE_ADMISSION_BITS
} from '../../src/space/admission.ts'
import {
  CHAT_BURST, CHAT_PEER_BURST, CHAT_PER_PEER_PER_SECOND, CHAT_PER_SECOND, CHAT_SEND_MARGIN, MAX_SYNC_NEW_AUTHORS, NEWCOMER_CHAT_BURST, NEWCOMER_CHAT_PER_SECOND, SpaceChat
} from '../../src/space/chat.ts'
import {
  ChatHistory, MAX_CHAT_HISTORY, MAX_CHAT_KEPT, MAX_NEWCOMER_CHAT, MAX_PROMOTED_CHAT, MAX_NEWCOMERS_TRACKED, MAX_PROMOTED, NEWCOMER_PROBATION_MS, PROMOTION_BURST, PROMOTIONS_PER_HOUR
} from '../../src/space/history.ts'
import type { Joined, SpaceCore } from '../../src/space/joined.ts'
import { KeyRing } from '../../src/space/keyring.ts'
import { SpaceEdits, WORLD_UPDATE_PEER_BURST, WORLD_UPDATES_PER_PEER_PER_SECOND, WorldLog } from '../../src/space/edits.ts'
import { placeObject, World } from '../../src/space/world.ts'
import { createWorldRecord } from '../../src/space/records.ts'
import { createChat, createDescriptor, initialPolicy, type Chat } from '../../src/space/records.ts'
import { SpaceStore } from '../../src/space/store.ts'
import { Store } from '../../src/store/store.ts'
import { cleanups, tempDir } from '../helpers/cleanup.ts'
import { seeded } from '../helpers/random.ts'

const MODEL = 'bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy'
const SPACE = 'bafyreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku'

/** A chat as the model sees it (the model reads only id, author and ts). */
function chatOf (author: string, ts: number, n: number): Chat {
  return { id: `c${String(n).padStart(6, '0')}`, author, ts, text: `m${n}`, space: SPACE, bytes: new Uint8Array() }
}

const keyOf = (seed: number): Ed25519Key => {
  const s = new Uint8Array(32).fill(0x33)
  s[0] = seed
  s[1] = seed >> 8
  return ed25519KeyFromSeed(s)
}
const didOf = (k: Ed25519Key): string => didFromPublicKey(k.publicKey)
const fresh = (i: number): string => `did:key:fresh${i}`

describe('chat history: known authors apart from newcomers', () => {
  it(`a flood of ${MAX_CHAT_HISTORY + 100} newcomers (one message each) evicts none of the owner's ${MAX_CHAT_HISTORY} messages`, () => {
    const h = new ChatHistory()
    let n = 0
    for (let i = 0; i < MAX_CHAT_HISTORY; i++) assert.ok(h.add(chatOf('did:key:owner', 1000 + i, n++), 'named').added)
    let evicted = 0
    for (let i = 0; i < MAX_CHAT_HISTORY + 100; i++) {
      const r = h.add(chatOf(fresh(i), 10_000 + i, n++), 'new')
      evicted += r.evicted.length
      assert.ok(r.evicted.every(e => e.area === 'new'), 'a newcomer evicts only newcomers')
    }
    assert.equal(h.countOf('did:key:owner', 'named'), MAX_CHAT_HISTORY)
    assert.equal(h.size('new'), MAX_NEWCOMER_CHAT, `MAX_NEWCOMER_CHAT (${MAX_NEWCOMER_CHAT}) newcomers' messages kept, no more`)
    assert.equal(evicted, MAX_CHAT_HISTORY + 100 - MAX_NEWCOMER_CHAT)
    assert.equal(h.messages.length, MAX_CHAT_HISTORY + MAX_NEWCOMER_CHAT)
  })

  it(`past MAX_CHAT_HISTORY (${MAX_CHAT_HISTORY}) the named author holding the most loses its oldest: a chatty member does not erase a quiet one`, () => {
    const h = new ChatHistory()
    let n = 0
    for (let i = 0; i < 20; i++) h.add(chatOf('did:key:quiet', i, n++), 'named')
    for (let i = 0; i < MAX_CHAT_HISTORY - 20; i++) h.add(chatOf('did:key:chatty', 100 + i, n++), 'named')
    assert.equal(h.size('named'), MAX_CHAT_HISTORY)
    // One more: the chatty author's oldest goes, though the quiet one's are older.
    const r = h.add(chatOf('did:key:chatty', 10_000, n++), 'named')
    assert.deepEqual(r.evicted.map(e => e.chat.author), ['did:key:chatty'])
    for (let i = 0; i < 2000; i++) h.add(chatOf('did:key:chatty', 20_000 + i, n++), 'named')
    assert.equal(h.countOf('did:key:quiet', 'named'), 20)
    assert.equal(h.size('named'), MAX_CHAT_HISTORY)
  })

  it(`promoted sybils, however many and however long they speak, evict none of the named authors' messages; past MAX_PROMOTED_CHAT (${MAX_PROMOTED_CHAT}) they share the promoted part: K of them leave an honest promoted author MAX_PROMOTED_CHAT / (K + 1)`, () => {
    const h = new ChatHistory()
    let n = 0
    for (let i = 0; i < MAX_CHAT_HISTORY; i++) h.add(chatOf(i % 5 === 4 ? 'did:key:member' : 'did:key:owner', i, n++), 'named')
    for (let i = 0; i < MAX_PROMOTED_CHAT; i++) h.add(chatOf('did:key:honest', 1000 + i, n++), 'known')
    // K promoted sybils (8 hours of promotions), each speaking 20 times: many times both bounds.
    const K = 499
    for (let round = 0; round < 20; round++) {
      for (let k = 0; k < K; k++) {
        const r = h.add(chatOf(fresh(k), 10_000 + round * K + k, n++), 'known')
        assert.ok(r.evicted.every(e => e.area === 'known'), 'a promoted author evicts only promoted authors')
      }
    }
    assert.equal(h.size('named'), MAX_CHAT_HISTORY)
    assert.equal(h.countOf('did:key:owner', 'named'), MAX_CHAT_HISTORY * 4 / 5)
    assert.equal(h.countOf('did:key:member', 'named'), MAX_CHAT_HISTORY / 5)
    assert.equal(h.size('known'), MAX_PROMOTED_CHAT)
    assert.equal(h.countOf('did:key:honest', 'known'), MAX_PROMOTED_CHAT / (K + 1))
  })

  it('a message without a proof never evicts a proven newcomer: it takes free room, then only the place of another unproven one, and goes first', () => {
    const h = new ChatHistory()
    let n = 0
    for (let i = 0; i < MAX_NEWCOMER_CHAT - 10; i++) h.add(chatOf(fresh(i % 50), 1000 + i, n++), 'new')
    let kept = 0
    for (let i = 0; i < 2 * MAX_NEWCOMER_CHAT; i++) {
      const r = h.add(chatOf(`did:key:stranger${i}`, 5000 + i, n++), 'unproven')
      assert.ok(r.evicted.every(e => e.area === 'unproven'), 'an unproven message evicts only unproven ones')
      if (r.added) kept++
    }
    assert.equal(h.size('new'), MAX_NEWCOMER_CHAT - 10, 'every proven newcomer message is kept')
    assert.equal(h.size('unproven'), 10, 'the unproven fill the free room, no more')
    assert.ok(kept >= 10)
    // A proven newcomer's next message takes the place of an unproven one.
    const r = h.add(chatOf(fresh(0), 99_999, n++), 'new')
    assert.deepEqual(r.evicted.map(e => e.area), ['unproven'])
    for (let i = 0; i < 20; i++) h.add(chatOf(fresh(1), 100_000 + i, n++), 'new')
    assert.equal(h.size('unproven'), 0)
    assert.equal(h.size('new'), MAX_NEWCOMER_CHAT)
    // The part full of proven ones, an unproven message is not kept at all.
    const u = h.add(chatOf('did:key:late', 200_000, n++), 'unproven')
    assert.equal(u.added, false)
    assert.deepEqual(u.evicted, [])
  })

  it('the proof of an author is forgotten when its last message is evicted', () => {
    const h = new ChatHistory()
    h.setProof(fresh(0), new Uint8Array(8))
    h.add(chatOf(fresh(0), 1, 0), 'new')
    for (let i = 1; i <= MAX_NEWCOMER_CHAT; i++) h.add(chatOf(fresh(i), 1 + i, i), 'new')
    assert.equal(h.holds(fresh(0)), false)
    assert.equal(h.proofOf(fresh(0)), undefined)
  })

  it('a message older than all of its part is not kept once the part is full', () => {
    const h = new ChatHistory()
    for (let i = 0; i < MAX_CHAT_HISTORY; i++) h.add(chatOf('did:key:owner', 1000 + i, i), 'named')
    const r = h.add(chatOf('did:key:owner', 1, 999_999), 'named')
    assert.equal(r.added, false)
    assert.deepEqual(r.evicted, [])
    assert.equal(h.ids.has('c999999'), false)
  })

  it(`a newcomer is promoted when it speaks NEWCOMER_PROBATION_MS (${NEWCOMER_PROBATION_MS} ms) after we first heard it, not before`, () => {
    const h = new ChatHistory()
    const yes = (): boolean => true
    assert.equal(h.heard('did:key:bob', 0, yes), false)
    assert.equal(h.heard('did:key:bob', NEWCOMER_PROBATION_MS - 1, yes), false)
    assert.equal(h.knows('did:key:bob'), false)
    assert.equal(h.heard('did:key:bob', NEWCOMER_PROBATION_MS, yes), true)
    assert.equal(h.knows('did:key:bob'), true)
  })

  it(`promotions past PROMOTION_BURST (${PROMOTION_BURST}), then PROMOTIONS_PER_HOUR (${PROMOTIONS_PER_HOUR}), wait`, () => {
    const h = new ChatHistory()
    const bucket = new TokenBuckets(PROMOTIONS_PER_HOUR / 3600, PROMOTION_BURST)
    const N = PROMOTION_BURST + 5
    for (let i = 0; i < N; i++) h.heard(fresh(i), 0, () => true)
    const at = NEWCOMER_PROBATION_MS
    const promoted = Array.from({ length: N }, (_, i) => h.heard(fresh(i), at, () => bucket.take('s', 1, at))).filter(Boolean).length
    assert.equal(promoted, PROMOTION_BURST)
    // An hour on, PROMOTIONS_PER_HOUR more (the bucket holds at most PROMOTION_BURST).
    const later = at + 3600_000
    const more = Array.from({ length: N }, (_, i) => h.heard(fresh(i), later, () => bucket.take('s', 1, later))).filter(Boolean).length
    assert.equal(more, Math.min(PROMOTION_BURST, N - PROMOTION_BURST))
  })

  it(`past MAX_NEWCOMERS_TRACKED (${MAX_NEWCOMERS_TRACKED}) the newcomer heard first starts its probation again; past MAX_PROMOTED (${MAX_PROMOTED}) the first promoted is forgotten`, () => {
    const h = new ChatHistory()
    for (let i = 0; i <= MAX_NEWCOMERS_TRACKED; i++) h.heard(fresh(i), 0, () => true)
    // fresh(1) is still on probation (and done with it); fresh(0) was forgotten: heard again, it starts over.
    assert.equal(h.heard(fresh(1), NEWCOMER_PROBATION_MS, () => true), true)
    assert.equal(h.heard(fresh(0), NEWCOMER_PROBATION_MS, () => true), false)
    const g = new ChatHistory()
    for (let i = 0; i <= MAX_PROMOTED; i++) { g.heard(fresh(i), 0, () => true); g.heard(fresh(i), NEWCOMER_PROBATION_MS, () => true) }
    assert.equal(g.knows(fresh(0)), false)
    assert.equal(g.knows(fresh(1)), true)
    assert.equal(g.knows(fresh(MAX_PROMOTED)), true)
  })

  it('random interleavings of all four parts keep every bound and evict only inside a part (unproven before proven newcomers) (seeded)', () => {
    const rnd = seeded(14)
    const h = new ChatHistory()
    const areas = ['named', 'known', 'new', 'unproven'] as const
    for (let n = 0; n < 8000; n++) {
      const area = areas[rnd.int(4)]
      const author = area === 'named' ? `did:key:k${rnd.int(5)}` : `${area}:${fresh(rnd.int(2000))}`
      const r = h.add(chatOf(author, rnd.int(100_000), n), area)
      if (area === 'named' || area === 'known' || area === 'unproven') assert.ok(r.evicted.every(e => e.area === area))
      else assert.ok(r.evicted.every(e => e.area === 'new' || e.area === 'unproven'))
      assert.ok(h.size('named') <= MAX_CHAT_HISTORY && h.size('known') <= MAX_PROMOTED_CHAT && h.size('new') + h.size('unproven') <= MAX_NEWCOMER_CHAT)
      assert.equal(h.messages.length, h.size('named') + h.size('known') + h.size('new') + h.size('unproven'))
      assert.ok(h.messages.length <= MAX_CHAT_KEPT)
    }
    for (let i = 1; i < h.messages.length; i++) {
      const [a, b] = [h.messages[i - 1], h.messages[i]]
      assert.ok(a.ts < b.ts || (a.ts === b.ts && a.id < b.id), 'kept in (ts, id) order')
    }
  })
})

describe('admission proof', () => {
  it(`a proof found for (space, did) admits that did there at SPACE_ADMISSION_BITS (${SPACE_ADMISSION_BITS}), and no other did or space`, async () => {
    const did = didOf(keyOf(1))
    let tries = 0
    const start = performance.now()
    const nonce = await solveAdmission(SPACE, did, { onTries: n => { tries = n } })
    const ms = performance.now() - start
    // For the record (no timing is asserted): what one honest newcomer pays, once per space.
    console.log(`# admission proof: ${tries} hashes in ${ms.toFixed(0)} ms (2^${SPACE_ADMISSION_BITS} = ${2 ** SPACE_ADMISSION_BITS} expected)`)
    assert.equal(nonce.length, ADMISSION_NONCE_BYTES)
    assert.ok(isAdmitted(SPACE, did, nonce))
    assert.doesNotThrow(() => { checkAdmission(SPACE, did, nonce) })
    assert.throws(() => { checkAdmission(SPACE, didOf(keyOf(2)), nonce) }, InvalidAdmissionError)
    assert.throws(() => { checkAdmission(SPACE.replace('ku', 'kv'), did, nonce) }, InvalidAdmissionError)
    assert.throws(() => { checkAdmission(SPACE, did, undefined) }, AdmissionRequiredError)
    assert.throws(() => { checkAdmission(SPACE, did, nonce.subarray(1)) }, InvalidAdmissionError)
  })

  it('a nonce one bit short of SPACE_ADMISSION_BITS is refused', () => {
    const did = didOf(keyOf(3))
    const nonce = new Uint8Array(ADMISSION_NONCE_BYTES)
    const view = new DataView(nonce.buffer)
    // The first nonce with exactly SPACE_ADMISSION_BITS - 1 leading zero bits.
    for (let i = 0; ; i++) {
      view.setUint32(4, i)
      if (isAdmitted(SPACE, did, nonce, SPACE_ADMISSION_BITS - 1) && !isAdmitted(SPACE, did, nonce)) break
    }
    assert.throws(() => { checkAdmission(SPACE, did, nonce) }, InvalidAdmissionError)
  })
})

describe('the chat part on a real store: limits per signing peer and per peer newcomers come through', () => {
  async function setup (t: import('node:test').TestContext): Promise<{ chat: SpaceChat, edits: SpaceEdits, j: Joined, published: Uint8Array[], core: SpaceCore }> {
    const defer = cleanups(t)
    const dir = await tempDir(defer, 'space-history')
    const store = await Store.open(dir)
    defer(async () => { await store.close() })
    const owner = keyOf(100)
    const d = await createDescriptor(owner, { name: 'Flooded' })
    const published: Uint8Array[] = []
    const core = {
      did: didOf(owner),
      key: owner,
      store: new SpaceStore(store.sublevel('space')),
      gossip: { publish: async (_topic: string, data: Uint8Array) => { published.push(data); return 1 } },
      emit: () => {}
    } as unknown as SpaceCore
    ;(core as unknown as { parcels: () => [] }).parcels = () => []
    const j = { d, policy: initialPolicy(d), removed: false, keys: new KeyRing(d.id), chat: new ChatHistory(), edits: new WorldLog() } as unknown as Joined
    return { chat: new SpaceChat(core), edits: new SpaceEdits(core), j, published, core }
  }

  it(`one peer signing chat of many known authors: past CHAT_PEER_BURST (${CHAT_PEER_BURST}, then ${CHAT_PER_PEER_PER_SECOND}/s) each is a SpaceRateLimitError`, async t => {
    const { chat, j } = await setup(t)
    const authors = Array.from({ length: CHAT_PEER_BURST + 5 }, (_, i) => keyOf(200 + i))
    j.policy = { ...j.policy, editors: authors.map(didOf) }
    const now = Date.now()
    let taken = 0
    let refused = 0
    for (const a of authors) {
      const c = await createChat(a, j.d.id, 'hi', now)
      try { await chat.take(j, c.bytes, false, now, { peer: 'mallory' }); taken++ } catch (err) {
        assert.equal((err as Error).name, 'SpaceRateLimitError')
        assert.match((err as Error).message, /signs more than/)
        refused++
      }
    }
    assert.equal(taken, CHAT_PEER_BURST)
    assert.equal(refused, 5)
    // Another peer is not held back by mallory's flood.
    const c = await createChat(keyOf(200), j.d.id, 'from elsewhere', now)
    await chat.take(j, c.bytes, false, now, { peer: 'honest' })
  })

  it(`newcomers' chat through one peer: past NEWCOMER_CHAT_BURST (${NEWCOMER_CHAT_BURST}, then ${NEWCOMER_CHAT_PER_SECOND}/s) each is a SpaceRateLimitError; without a proof an AdmissionRequiredError`, async t => {
    const { chat, j } = await setup(t)
    const newcomer = keyOf(300)
    const w = await solveAdmission(j.d.id, didOf(newcomer))
    const now = Date.now()
    const bare = await createChat(newcomer, j.d.id, 'no proof', now)
    await assert.rejects(chat.take(j, bare.bytes, false, now, { peer: 'p-bare', via: 'relay' }), { name: 'AdmissionRequiredError' })
    const errors: string[] = []
    for (let i = 0; i < NEWCOMER_CHAT_BURST + 5; i++) {
      const c = await createChat(newcomer, j.d.id, `hello ${i}`, now)
      // Each signed by another peer (as a peer minting peer keys would), all through one relay.
      try { await chat.take(j, c.bytes, false, now, { peer: `p${i}`, via: 'relay', proof: w }) } catch (err) { errors.push((err as Error).message) }
    }
    assert.equal(errors.filter(m => /from newcomers through relay/.test(m)).length, 5)
    assert.equal(j.chat.countOf(didOf(newcomer), 'new'), CHAT_BURST, 'the author limit held it to CHAT_BURST first')
    assert.equal(j.chat.size('known'), 0, 'a newcomer on probation is kept apart')
  })

  it(`say: past CHAT_BURST - CHAT_SEND_MARGIN (${CHAT_BURST - CHAT_SEND_MARGIN}, then ${CHAT_PER_SECOND}/s) is refused with SpaceRateLimitError and not published`, async t => {
    const { chat, j, published } = await setup(t)
    let said = 0
    let refused = 0
    for (let i = 0; i < 3 * CHAT_BURST; i++) {
      try { await chat.say(j, `line ${i}`); said++ } catch (err) {
        assert.equal((err as Error).name, 'SpaceRateLimitError')
        assert.match((err as Error).message, /^not sent/)
        refused++
      }
    }
    assert.ok(said >= CHAT_BURST - CHAT_SEND_MARGIN && said < CHAT_BURST, `${said} said`)
    assert.equal(published.length, said)
    assert.equal(said + refused, 3 * CHAT_BURST)
  })

  it('promoted sybils (injected clock, past the probation) go to the promoted part: the owner\'s and an editor\'s history is whole, in the store too, and the parts and proofs come back after a reopen', async t => {
    const { chat, j, core } = await setup(t)
    const editor = keyOf(500)
    j.policy = { ...j.policy, editors: [didOf(editor)] }
    const t0 = Date.now() - 3600_000
    for (let i = 0; i < MAX_CHAT_HISTORY; i++) {
      const c = await createChat(i % 5 === 4 ? editor : keyOf(100), j.d.id, `history ${i}`, t0 + i * 1000)
      await chat.take(j, c.bytes, false, t0 + i * 1000, { peer: `p${i % 7}` })
    }
    assert.equal(j.chat.size('named'), MAX_CHAT_HISTORY)
    const sybils = [keyOf(600), keyOf(601), keyOf(602)]
    const proofs = await Promise.all(sybils.map(async k => await solveAdmission(j.d.id, didOf(k))))
    const now = Date.now()
    for (const [s, k] of sybils.entries()) await chat.take(j, (await createChat(k, j.d.id, 'hello', now)).bytes, false, now, { peer: `s${s}`, proof: proofs[s] })
    assert.equal(j.chat.size('new'), sybils.length)
    const later = now + NEWCOMER_PROBATION_MS
    for (let i = 0; i < 200; i++) {
      for (const [s, k] of sybils.entries()) {
        const at = later + i * 1000
        await chat.take(j, (await createChat(k, j.d.id, `spam ${i}`, at)).bytes, false, at, { peer: `s${s}`, proof: proofs[s] })
      }
    }
    assert.ok(sybils.every(k => j.chat.knows(didOf(k))), 'promoted')
    assert.equal(j.chat.size('named'), MAX_CHAT_HISTORY, 'the promoted evict none of the named')
    assert.equal(j.chat.size('known'), MAX_PROMOTED_CHAT)
    // Reopened from the store: the same parts, the proofs of the promoted, the named whole.
    const j2 = { ...j, chat: new ChatHistory() } as Joined
    await new SpaceChat(core).replay(j2)
    for (const area of ['named', 'known', 'new', 'unproven'] as const) assert.equal(j2.chat.size(area), j.chat.size(area), area)
    assert.ok(sybils.every((k, s) => j2.chat.proofOf(didOf(k))?.every((b, i) => b === proofs[s][i])))
  })

  it('a record the store holds as promoted moves to the named part once the policy names its author', async t => {
    const { chat, j, core } = await setup(t)
    const author = keyOf(700)
    const c = await createChat(author, j.d.id, 'before I was an editor')
    await core.store.addChat(j.d.id, { area: 'known', ts: c.ts, id: c.id, bytes: c.bytes })
    j.policy = { ...j.policy, editors: [didOf(author)] }
    await chat.replay(j)
    assert.equal(j.chat.area(c.id), 'named')
    assert.deepEqual((await core.store.chat(j.d.id)).map(r => r.area), ['named'])
  })

  it(`a lying sync answer: records without a valid proof are unproven, from at most MAX_SYNC_NEW_AUTHORS (${MAX_SYNC_NEW_AUTHORS}) authors an answer, and evict no proven newcomer and nothing named`, async t => {
    const { chat, j } = await setup(t)
    const now = Date.now()
    for (let i = 0; i < 100; i++) {
      const c = await createChat(keyOf(100), j.d.id, `owner ${i}`, now - 10_000 + i)
      await chat.take(j, c.bytes, true, now, { peer: 'o' })
    }
    // Proven newcomers the joiner holds from elsewhere: nearly the whole newcomers' part.
    const honest = [keyOf(800), keyOf(801)]
    const hp = await Promise.all(honest.map(async k => await solveAdmission(j.d.id, didOf(k))))
    for (let i = 0; i < MAX_NEWCOMER_CHAT - 5; i++) {
      const s = i % 2
      const c = await createChat(honest[s], j.d.id, `honest ${i}`, now - 5000 + i)
      await chat.take(j, c.bytes, true, now, { peer: 'honest-peer', proof: hp[s], strangers: new Set() })
    }
    assert.equal(j.chat.size('new'), MAX_NEWCOMER_CHAT - 5)
    // The liar: 2 * MAX_SYNC_NEW_AUTHORS fresh identities, three messages each, half with a forged proof.
    const strangers = new Set<string>()
    let n = 0
    for (let i = 0; i < 2 * MAX_SYNC_NEW_AUTHORS; i++) {
      const k = keyOf(1000 + i)
      for (let m = 0; m < 3; m++) {
        const c = await createChat(k, j.d.id, `liar ${i}/${m}`, now - 1000 + n++)
        await chat.take(j, c.bytes, true, now, { peer: 'liar', proof: i % 2 === 0 ? new Uint8Array(8) : undefined, strangers })
      }
    }
    assert.equal(strangers.size, MAX_SYNC_NEW_AUTHORS)
    assert.equal(j.chat.size('new'), MAX_NEWCOMER_CHAT - 5, 'every proven newcomer message is kept')
    assert.equal(j.chat.size('unproven'), 5, 'the liar had only the free room')
    assert.equal(j.chat.size('named'), 100)
    const liars = new Set(j.chat.messages.filter(c => c.text.startsWith('liar')).map(c => c.author))
    assert.ok([...liars].every(a => strangers.has(a)))
  })

  it(`one peer signing world updates of several editors: past WORLD_UPDATE_PEER_BURST (${WORLD_UPDATE_PEER_BURST}, then ${WORLD_UPDATES_PER_PEER_PER_SECOND}/s) each is a SpaceRateLimitError`, async t => {
    const { edits, j } = await setup(t)
    const editors = [keyOf(400), keyOf(401), keyOf(402)]
    j.policy = { ...j.policy, editors: editors.map(didOf) }
    const per = Math.ceil((WORLD_UPDATE_PEER_BURST + 10) / editors.length)
    const records: Uint8Array[] = []
    for (const [e, key] of editors.entries()) {
      // Each editor's updates in its own order, made against a scratch copy of the world.
      const scratch = new World()
      const ctx = edits.editContext(j)
      for (let i = 0; i < per; i++) {
        const update = placeObject(scratch, didOf(key), `o${e}-${i}`, { model: MODEL, position: [1 + i, 0, 1 + e], rotation: [0, 0, 0, 1], scale: [1, 1, 1], props: {} })
        scratch.apply(didOf(key), update, ctx)
        records.push((await createWorldRecord(key, j.d.id, update)).bytes)
      }
    }
    // Interleaved, as they would come: editor 0, 1, 2, 0, 1, 2, …
    const order = Array.from({ length: per }, (_, i) => editors.map((_e, e) => records[e * per + i])).flat()
    const now = Date.now()
    let taken = 0
    let refused = 0
    for (const bytes of order) {
      try { await edits.take(j, bytes, false, now, 'mallory'); taken++ } catch (err) {
        assert.equal((err as Error).name, 'SpaceRateLimitError')
        assert.match((err as Error).message, /signs more than/)
        refused++
      }
    }
    assert.equal(taken, WORLD_UPDATE_PEER_BURST)
    assert.equal(refused, order.length - WORLD_UPDATE_PEER_BURST)
    assert.equal(j.edits.world.objects().size, WORLD_UPDATE_PEER_BURST)
  })
})
