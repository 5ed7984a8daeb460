/**
 * The directory's records and book, as pure functions: what a listing must prove (public space,
 * signed by its owner, the owner's proof of work, fresh), every field's bound tested past, and the
 * book's bounds: per owner, in all (what it evicts first, never by a listing's own claim), staleness,
 * tombstones and ranking.
 */
import { describe, it, before } from 'node:test'
import assert from 'node:assert/strict'
import {
  createListing, createUnlisting, DirectoryBook, LISTING_TTL_MS, MAX_DESCRIPTION_LENGTH, MAX_LISTING_ADDRS, MAX_LISTING_BYTES,
  MAX_LISTINGS, MAX_LISTINGS_PER_OWNER, MAX_PRESENT, MAX_TOMBSTONES, MAX_TAG_LENGTH, MAX_TAGS, MAX_THUMBNAIL_LENGTH, MAX_LISTING_CLOCK_SKEW_MS, verifyDirectoryRecord,
  type Listing
} from '../../src/directory/index.ts'
import { descriptor, lazyOwner, owner, signListing, type Owner } from './fixtures.ts'

const TTL = LISTING_TTL_MS
const THUMB = 'bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy'
const PEER = '12D3KooWGzxzKZYveHXtpG6AsrUJBcWxHBFS2HsEoGTxrMLvKXtf'

function reason (fn: () => unknown): string {
  try {
    fn()
  } catch (err) {
    return (err as Error).name
  }
  return 'accepted'
}

describe('directory records', () => {
  let alice: Owner
  let bob: Owner

  before(async () => {
    alice = await owner(1)
    bob = await owner(2)
  })

  it('an owner lists a public space: the record proves the space, its owner and its fields', async () => {
    const d = await descriptor(alice, 'Plaza')
    const l = await createListing(alice.key, alice.did, {
      descriptor: d.bytes, description: 'come in', tags: ['music', 'chat'], thumbnail: THUMB, present: 3,
      addrs: [`/ip4/127.0.0.1/tcp/4001/p2p/${PEER}`], seq: 5, ts: Date.now(), work: alice.work
    })
    const r = verifyDirectoryRecord(l.bytes, Date.now(), TTL)
    assert.equal(r.kind, 'listing')
    if (r.kind !== 'listing') return
    assert.equal(r.listing.space, d.id)
    assert.equal(r.listing.name, 'Plaza')
    assert.equal(r.listing.owner, alice.did)
    assert.deepEqual(r.listing.tags, ['music', 'chat'])
    assert.equal(r.listing.thumbnail, THUMB)
    assert.equal(r.listing.present, 3)
    assert.equal(r.listing.seq, 5)
  })

  it('refuses to list a private space, and drops a forged listing of one', async () => {
    const d = await descriptor(alice, 'Den', true)
    await assert.rejects(createListing(alice.key, alice.did, { descriptor: d.bytes, description: '', tags: [], thumbnail: '', present: 1, addrs: [], seq: 1, ts: Date.now(), work: alice.work }), { name: 'PrivateSpaceListingError' })
    const forged = await signListing(alice, d)
    assert.equal(reason(() => verifyDirectoryRecord(forged, Date.now(), TTL)), 'PrivateSpaceListingError')
  })

  it("drops a listing of someone else's space and one whose descriptor is another space's", async () => {
    const d = await descriptor(alice, 'Plaza')
    assert.equal(reason(() => verifyDirectoryRecord(new Uint8Array(0), Date.now(), TTL)), 'InvalidListingError')
    const notOwner = await signListing(bob, d)
    assert.equal(reason(() => verifyDirectoryRecord(notOwner, Date.now(), TTL)), 'NotListingOwnerError')
    await assert.rejects(createListing(bob.key, bob.did, { descriptor: d.bytes, description: '', tags: [], thumbnail: '', present: 1, addrs: [], seq: 1, ts: Date.now(), work: bob.work }), { name: 'NotListingOwnerError' })
    const other = await descriptor(alice, 'Elsewhere')
    const mismatched = await signListing(alice, d, { descriptor: other.bytes })
    assert.equal(reason(() => verifyDirectoryRecord(mismatched, Date.now(), TTL)), 'InvalidListingError')
  })

  it('a bad signature is InvalidListingError', async () => {
    const d = await descriptor(alice, 'Plaza')
    const good = await signListing(alice, d)
    // The signature is the bytes after `sig` (64 bytes); flip one inside it.
    const at = Buffer.from(good).indexOf(Buffer.from('sig')) + 6
    const bad = good.slice()
    bad[at] ^= 0xff
    assert.equal(reason(() => verifyDirectoryRecord(bad, Date.now(), TTL)), 'InvalidListingError')
  })

  it('every field is bounded: one past each bound is OversizedListingError', async () => {
    const d = await descriptor(alice, 'Plaza')
    const now = Date.now()
    const check = async (fields: Parameters<typeof signListing>[2]): Promise<string> => {
      const bytes = await signListing(alice, d, fields)
      return reason(() => verifyDirectoryRecord(bytes, now, TTL))
    }
    assert.equal(await check({ description: 'x'.repeat(MAX_DESCRIPTION_LENGTH) }), 'accepted')
    assert.equal(await check({ description: 'x'.repeat(MAX_DESCRIPTION_LENGTH + 1) }), 'OversizedListingError')
    assert.equal(await check({ tags: Array.from({ length: MAX_TAGS }, (_, i) => `t${i}`) }), 'accepted')
    assert.equal(await check({ tags: Array.from({ length: MAX_TAGS + 1 }, (_, i) => `t${i}`) }), 'OversizedListingError')
    assert.equal(await check({ tags: ['a'.repeat(MAX_TAG_LENGTH)] }), 'accepted')
    assert.equal(await check({ tags: ['a'.repeat(MAX_TAG_LENGTH + 1)] }), 'OversizedListingError')
    assert.equal(await check({ thumbnail: 'b'.repeat(MAX_THUMBNAIL_LENGTH + 1) }), 'OversizedListingError')
    assert.equal(await check({ present: MAX_PRESENT }), 'accepted')
    assert.equal(await check({ present: MAX_PRESENT + 1 }), 'OversizedListingError')
    const addr = `/ip4/127.0.0.1/tcp/4001/p2p/${PEER}`
    assert.equal(await check({ addrs: Array.from({ length: MAX_LISTING_ADDRS }, () => addr) }), 'accepted')
    assert.equal(await check({ addrs: Array.from({ length: MAX_LISTING_ADDRS + 1 }, () => addr) }), 'OversizedListingError')
    assert.equal(await check({ addrs: ['/ip4/127.0.0.1/tcp/4001'] }), 'InvalidListingError')
    assert.equal(await check({ tags: ['Not A Tag'] }), 'InvalidListingError')
    // A record over MAX_LISTING_BYTES is refused before it is decoded.
    assert.equal(reason(() => verifyDirectoryRecord(new Uint8Array(MAX_LISTING_BYTES + 1), now, TTL)), 'OversizedListingError')
  })

  it('needs the owner proof of work, and a fresh stamp', async () => {
    const d = await descriptor(alice, 'Plaza')
    const now = Date.now()
    const lazy = lazyOwner(9)
    const ld = await descriptor(lazy, 'Spam')
    const lazyListing = await signListing(lazy, ld)
    assert.equal(reason(() => verifyDirectoryRecord(lazyListing, now, TTL)), 'ListingWorkError')
    // Alice's work does not serve Bob.
    const bd = await descriptor(bob, 'Bob')
    const borrowed = await signListing({ ...bob, work: alice.work }, bd)
    assert.equal(reason(() => verifyDirectoryRecord(borrowed, now, TTL)), 'ListingWorkError')
    const old = await signListing(alice, d, { ts: now - TTL - 1 })
    assert.equal(reason(() => verifyDirectoryRecord(old, now, TTL)), 'StaleListingError')
    const ahead = await signListing(alice, d, { ts: now + MAX_LISTING_CLOCK_SKEW_MS + 1 })
    assert.equal(reason(() => verifyDirectoryRecord(ahead, now, TTL)), 'StaleListingError')
    const fresh = await signListing(alice, d)
    assert.equal(reason(() => verifyDirectoryRecord(fresh, now, TTL)), 'accepted')
  })

  it('an unlisting is signed and carries the work too', async () => {
    const d = await descriptor(alice, 'Plaza')
    const u = await createUnlisting(alice.key, { space: d.id, seq: 9, ts: Date.now(), work: alice.work })
    const r = verifyDirectoryRecord(u.bytes, Date.now(), TTL)
    assert.equal(r.kind, 'unlisting')
    const lazy = lazyOwner(9)
    const lu = await createUnlisting(lazy.key, { space: d.id, seq: 9, ts: Date.now(), work: lazy.work })
    assert.equal(reason(() => verifyDirectoryRecord(lu.bytes, Date.now(), TTL)), 'ListingWorkError')
  })
})

/** A plain listing for the book (the book trusts what the service verified). */
function fake (space: string, owner: string, present: number, ts: number, seq = 1): Listing {
  return { space, owner, present, ts, seq, name: space, description: '', tags: [], thumbnail: '', addrs: [], work: new Uint8Array(8), descriptor: undefined as never, bytes: new Uint8Array([1]) }
}

describe('directory book', () => {
  it('keeps the newest listing of a space; an older or equal one changes nothing', () => {
    const b = new DirectoryBook()
    assert.equal(b.put(fake('s1', 'o1', 1, 100, 2)).result, 'added')
    assert.equal(b.put(fake('s1', 'o1', 5, 90, 1)).result, 'older')
    assert.equal(b.put(fake('s1', 'o1', 5, 100, 2)).result, 'duplicate')
    assert.equal(b.put(fake('s1', 'o1', 7, 110, 3)).result, 'updated')
    assert.equal(b.get('s1')?.present, 7)
  })

  it(`holds at most MAX_LISTINGS_PER_OWNER (${MAX_LISTINGS_PER_OWNER}) per owner: the least recently refreshed goes`, () => {
    const b = new DirectoryBook()
    for (let i = 0; i < MAX_LISTINGS_PER_OWNER; i++) b.put(fake(`s${i}`, 'o1', 1, 100 + i))
    const { result, removed } = b.put(fake('extra', 'o1', 1, 200))
    assert.equal(result, 'added')
    assert.deepEqual(removed.map(r => [r.listing.space, r.reason]), [['s0', 'evicted']])
    assert.equal(b.size, MAX_LISTINGS_PER_OWNER)
  })

  it('holds at most its total: a new owner is refused whatever it claims; an owner held longer may push out the newest arrival', () => {
    const b = new DirectoryBook({ maxListings: 10 })
    for (let i = 0; i < 10; i++) b.put(fake(`s${i}`, `o${i}`, i + 1, 100), 1000 + i)
    assert.equal(b.ownerSince('o0'), 1000)
    assert.equal(b.put(fake('low', 'ox', 0, 100), 2000).result, 'full')
    assert.equal(b.put(fake('high', 'oy', MAX_PRESENT, 100), 2000).result, 'full')
    // o2 (held since 1002) lists a second space: o9, the newest arrival, makes room.
    const r = b.put(fake('s2b', 'o2', 1, 100), 2000)
    assert.equal(r.result, 'added')
    assert.deepEqual(r.removed.map(x => [x.listing.space, x.reason]), [['s9', 'evicted']])
    assert.equal(b.size, 10)
    assert.equal(b.ownerSince('o2'), 1002, 'an owner keeps its first-seen time')
    // A vouched listing (ours, or of a space we are in) gets in: the newest arrival goes again.
    const v = b.put(fake('ours', 'me', 1, 100), 3000, { vouched: true })
    assert.equal(v.result, 'added')
    assert.deepEqual(v.removed.map(x => x.listing.space), ['s8'])
    // ... and capacity never pushes it out: the next newest does.
    const w = b.put(fake('s1b', 'o1', 1, 100), 3000)
    assert.deepEqual(w.removed.map(x => x.listing.space), ['s7'])
    assert.ok(b.get('ours') != null)
    assert.equal(b.ranked()[0].space, 's6', 'what a reader sees is still ranked by members present')
  })

  it('a full book of new owners claiming the most members present never pushes out an owner held earlier, and takes its refresh', () => {
    const b = new DirectoryBook()
    b.put(fake('honest', 'h', 3, 100, 1), 1000)
    // A spammer's owners, four listings each, each claiming MAX_PRESENT, far more than the book holds.
    const dropped: Record<string, number> = {}
    for (let i = 0; i < MAX_LISTINGS + 40; i++) {
      const { result, removed } = b.put(fake(`spam${i}`, `spammer${Math.floor(i / MAX_LISTINGS_PER_OWNER)}`, MAX_PRESENT, 200), 2000 + i)
      dropped[result] = (dropped[result] ?? 0) + 1
      for (const r of removed) assert.notEqual(r.listing.owner, 'h', 'the honest owner is never evicted')
    }
    assert.equal(b.size, MAX_LISTINGS)
    assert.ok((dropped.full ?? 0) >= 40, JSON.stringify(dropped))
    assert.equal(b.get('honest')?.present, 3)
    const refresh = b.put(fake('honest', 'h', 4, 300, 2), 5000)
    assert.equal(refresh.result, 'updated')
    assert.equal(b.get('honest')?.present, 4)
    assert.equal(b.ownerSince('h'), 1000)
    // The display still ranks by the claim; the sync answer hands on the owner held longest first.
    assert.equal(b.ranked().at(-1)?.space, 'honest')
    assert.equal(b.byTenure()[0].space, 'honest')
    // The book of the spam's own newest arrivals is what goes when an owner held earlier lists more.
    const more = b.put(fake('honest2', 'h', 1, 300), 6000)
    assert.equal(more.result, 'added')
    assert.match(more.removed[0].listing.owner, /^spammer/)
  })

  it(`keeps at most MAX_TOMBSTONES (${MAX_TOMBSTONES}) tombstones, the oldest going first`, () => {
    const b = new DirectoryBook()
    const u = (i: number): Parameters<DirectoryBook['unlist']>[0] => ({ space: `s${i}`, owner: 'o', seq: 1, ts: 100 + i, work: new Uint8Array(8), bytes: new Uint8Array([i & 0xff]) })
    for (let i = 0; i <= MAX_TOMBSTONES; i++) b.unlist(u(i))
    assert.equal(b.tombstoneCount, MAX_TOMBSTONES)
    // The first went: its listing may come back; the last's older copy may not.
    assert.equal(b.put(fake('s0', 'o', 1, 100, 1)).result, 'added')
    assert.equal(b.put(fake(`s${MAX_TOMBSTONES}`, 'o', 1, 100, 1)).result, 'unlisted')
  })

  it(`holds at most MAX_LISTINGS (${MAX_LISTINGS}) by default, whatever the number of owners`, () => {
    const b = new DirectoryBook()
    for (let i = 0; i <= MAX_LISTINGS; i++) b.put(fake(`s${i}`, `o${i}`, 1 + (i % 7), 100 + i))
    assert.equal(b.size, MAX_LISTINGS)
    assert.equal(b.owners, MAX_LISTINGS)
  })

  it('drops listings not refreshed within the TTL', () => {
    const b = new DirectoryBook()
    b.put(fake('old', 'o1', 1, 1000))
    b.put(fake('new', 'o2', 1, 5000))
    const gone = b.expire(1000 + TTL + 1, TTL)
    assert.deepEqual(gone.map(r => [r.listing.space, r.reason]), [['old', 'stale']])
    assert.equal(b.size, 1)
  })

  it("an owner's unlisting removes the listing at once and keeps an older copy out", () => {
    const b = new DirectoryBook()
    b.put(fake('s1', 'o1', 1, 100, 5))
    const removed = b.unlist({ space: 's1', owner: 'o1', seq: 6, ts: 101, work: new Uint8Array(8), bytes: new Uint8Array([2]) })
    assert.deepEqual(removed.map(r => r.reason), ['unlisted'])
    assert.equal(b.put(fake('s1', 'o1', 1, 100, 5)).result, 'unlisted')
    assert.equal(b.put(fake('s1', 'o1', 1, 200, 7)).result, 'added')
    // Someone else's unlisting of it removes nothing.
    assert.deepEqual(b.unlist({ space: 's1', owner: 'o2', seq: 99, ts: 300, work: new Uint8Array(8), bytes: new Uint8Array([3]) }), [])
    assert.equal(b.size, 1)
  })

  it(`ranks by members present, capped at MAX_PRESENT (${MAX_PRESENT}); a reader's own lower count wins`, () => {
    const b = new DirectoryBook()
    b.put(fake('a', 'o1', 3, 100))
    b.put(fake('b', 'o2', 9, 100))
    b.put(fake('c', 'o3', 5, 100))
    assert.deepEqual(b.ranked().map(l => l.space), ['b', 'c', 'a'])
    assert.deepEqual(b.ranked(l => l.space === 'b' ? 1 : l.present).map(l => l.space), ['c', 'a', 'b'])
  })
})
