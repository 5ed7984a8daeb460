/**
 * What one peer may cost the directory: the budget of new owners per source peer (pure, and in the
 * service with real signed records, where a spammer's peer brings no more than its budget while
 * another peer still may), the sync answer and reader past MAX_SYNC_RECORDS and
 * MAX_BAD_SYNC_RECORDS, the peers we sync with past MAX_SYNC_PEERS, and gossip past
 * GOSSIP_RECORD_BURST (a relayed record over its origin's rate is ignored, a direct one rejected).
 * The service here runs on stand-in ports (a unit test of the directory module alone).
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import {
  DirectoryBook, DirectoryService, GOSSIP_RECORD_BURST, LISTING_TTL_MS, MAX_BAD_SYNC_RECORDS, MAX_LISTINGS, MAX_NEW_OWNER_PEERS,
  MAX_NEW_OWNERS_PER_PEER, MAX_SYNC_PEERS, MAX_SYNC_RECORDS, MAX_TOMBSTONES, NEW_OWNER_WINDOW_MS, NewOwnerBudget, SyncPeers, SyncReader,
  syncAnswer, type Listing
} from '../../src/directory/index.ts'
import type { GossipMessage, GossipPort, GossipVerdict, ProtocolPort, RoutingPort } from '../../src/net/ports.ts'
import { descriptor, owner, signListing, type Owner } from './fixtures.ts'

function fake (space: string, owner: string, present: number, ts: number): Listing {
  return { space, owner, present, ts, seq: 1, name: space, description: '', tags: [], thumbnail: '', addrs: [], work: new Uint8Array(8), descriptor: undefined as never, bytes: new TextEncoder().encode(space) }
}

describe('directory budgets (pure)', () => {
  it(`one source peer brings at most MAX_NEW_OWNERS_PER_PEER (${MAX_NEW_OWNERS_PER_PEER}) new owners per NEW_OWNER_WINDOW_MS; others keep theirs`, () => {
    const b = new NewOwnerBudget()
    for (let i = 0; i < MAX_NEW_OWNERS_PER_PEER; i++) assert.equal(b.take('spammer', `o${i}`, 1000), true)
    assert.equal(b.take('spammer', 'one-more', 1000), false)
    assert.equal(b.take('spammer', 'o0', 1000), true, 'an owner already counted costs nothing more')
    assert.equal(b.take('honest', 'h', 1000), true)
    assert.equal(b.take('spammer', 'one-more', 1000 + NEW_OWNER_WINDOW_MS - 1), false)
    assert.equal(b.take('spammer', 'one-more', 1000 + NEW_OWNER_WINDOW_MS), true, 'a new window, a new budget')
  })

  it(`tracks at most MAX_NEW_OWNER_PEERS (${MAX_NEW_OWNER_PEERS}) peers`, () => {
    const b = new NewOwnerBudget()
    for (let i = 0; i <= MAX_NEW_OWNER_PEERS * 2; i++) b.take(`p${i}`, 'o', 1000)
    assert.ok(b.size <= MAX_NEW_OWNER_PEERS, `${b.size}`)
  })

  it(`a sync answer carries at most MAX_SYNC_RECORDS (${MAX_SYNC_RECORDS}), the owners held longest first, never a blocked one`, () => {
    const book = new DirectoryBook()
    for (let i = 0; i < MAX_LISTINGS; i++) book.put(fake(`s${i}`, `o${i}`, MAX_LISTINGS - i, 100), 1000 + i)
    for (let i = 0; i < MAX_TOMBSTONES; i++) book.unlist({ space: `gone${i}`, owner: 'x', seq: 1, ts: 100, work: new Uint8Array(8), bytes: new Uint8Array([1]) })
    const answer = syncAnswer(book, o => o === 'o1')
    assert.equal(answer.length, MAX_SYNC_RECORDS)
    assert.equal(new TextDecoder().decode(answer[0]), 's0')
    assert.equal(new TextDecoder().decode(answer[1]), 's2', 'the blocked owner is left out')
  })

  it(`a sync answer is read to MAX_SYNC_RECORDS at most, and given up past MAX_BAD_SYNC_RECORDS (${MAX_BAD_SYNC_RECORDS}) bad records`, () => {
    const r = new SyncReader()
    let n = 0
    while (r.next(false)) n++
    assert.equal(n + 1, MAX_SYNC_RECORDS)
    const bad = new SyncReader()
    for (let i = 0; i < MAX_BAD_SYNC_RECORDS; i++) assert.equal(bad.next(true), true)
    assert.throws(() => bad.next(true), { name: 'DirectoryRateLimitError' })
  })

  it(`syncs with at most MAX_SYNC_PEERS (${MAX_SYNC_PEERS}) peers per period, and a peer once per period`, () => {
    const s = new SyncPeers(60_000)
    for (let i = 0; i < MAX_SYNC_PEERS; i++) {
      assert.equal(s.may(`p${i}`, 1000), true)
      s.note(`p${i}`, 1000)
    }
    assert.equal(s.may('p0', 2000), false)
    assert.equal(s.may('late', 2000), false)
    assert.equal(s.may('late', 1000 + 60_001), true, 'the next period')
  })
})

describe('directory service budgets', () => {
  const owners: Owner[] = []
  let validator: ((m: GossipMessage) => GossipVerdict) | undefined
  const rejected: string[] = []
  const gossip: GossipPort = {
    publish: async () => 0,
    subscribe: () => () => {},
    subscribers: () => [],
    onSubscriptionChange: () => () => {},
    validate: (_topic, check) => { validator = check; return () => { validator = undefined } }
  }
  const protocols = {
    peerId: 'self', addresses: () => [], handle: async () => {}, unhandle: async () => {}, peers: () => [], connections: () => [],
    hangUp: async () => {}, onPeer: () => () => {}, dial: async () => { throw new Error('no network here') }
  } as unknown as ProtocolPort
  const routing: RoutingPort = { provide: async () => {}, cancelProvide: async () => {}, findProviders: async function * () {} }
  const store = { iterator: async function * () {}, get: async () => undefined, put: async () => {}, del: async () => {} }
  const make = (): DirectoryService => new DirectoryService({ refreshMs: 60_000, ttlMs: LISTING_TTL_MS }, {
    gossip, protocols, routing, onRejected: (peer, _p, err) => { rejected.push(`${peer} ${err.name}`) }, did: 'did:key:self', key: undefined as never,
    store: store as never, spaces: { descriptor: () => undefined, present: () => undefined }, social: { isBlocked: () => false }
  })
  let svc: DirectoryService | undefined

  before(async () => {
    // One proof of work each (about half a second): one owner past the budget.
    for (let i = 0; i <= MAX_NEW_OWNERS_PER_PEER; i++) owners.push(await owner(100 + i))
  })
  after(async () => { await svc?.stop() })

  it('one source peer cannot bring more than MAX_NEW_OWNERS_PER_PEER new owners; an owner we hold still refreshes; another peer still brings its own', async () => {
    const s = make()
    const listings = await Promise.all(owners.map(async (o, i) => await signListing(o, await descriptor(o, `Space ${i}`), { seq: 1 })))
    for (let i = 0; i < MAX_NEW_OWNERS_PER_PEER; i++) assert.equal(s.take(listings[i], 'spammer', 'test'), 'kept')
    assert.equal(s.take(listings[MAX_NEW_OWNERS_PER_PEER], 'spammer', 'test'), 'dropped')
    assert.equal(s.status().dropped.newOwnerBudget, 1)
    assert.equal(s.status().owners, MAX_NEW_OWNERS_PER_PEER)
    const o0 = owners[0]
    const refresh = await signListing(o0, await descriptor(o0, 'Space 0'), { seq: 2, present: 5 })
    assert.equal(s.take(refresh, 'spammer', 'test'), 'kept', 'an owner we hold is not new')
    assert.equal(s.take(listings[MAX_NEW_OWNERS_PER_PEER], 'honest', 'test'), 'kept')
    assert.equal(s.status().owners, MAX_NEW_OWNERS_PER_PEER + 1)
    assert.equal(rejected.length, 0, 'a source over its budget is not at fault for each record')
  })

  it(`gossip past GOSSIP_RECORD_BURST (${GOSSIP_RECORD_BURST}) from one origin: rejected when it sent it, ignored when a peer relayed it`, async () => {
    svc = make()
    await svc.start()
    assert.ok(validator != null)
    const record = await signListing(owners[0], await descriptor(owners[0], 'Space 0'), { seq: 1 })
    // The same record, known after the first: within the burst each is accepted or ignored, never rejected.
    const verdicts: GossipVerdict[] = []
    for (let i = 0; i < GOSSIP_RECORD_BURST * 2; i++) verdicts.push(validator({ topic: 't', from: 'origin', via: 'honest-relay', data: record }))
    assert.equal(verdicts[0], 'accept')
    assert.ok(!verdicts.includes('reject'), verdicts.join())
    assert.ok((svc.status().dropped.rateLimited ?? 0) >= 1, JSON.stringify(svc.status().dropped))
    assert.equal(rejected.length, 0, 'the relay is not reported')
    const direct: GossipVerdict[] = []
    for (let i = 0; i < GOSSIP_RECORD_BURST * 2; i++) direct.push(validator({ topic: 't', from: 'flooder', via: 'flooder', data: record }))
    assert.ok(direct.slice(0, GOSSIP_RECORD_BURST).every(v => v === 'ignore'), direct.join())
    assert.equal(direct.at(-1), 'reject')
    assert.ok(rejected.includes('flooder DirectoryRateLimitError'), rejected.join())
  })
})
