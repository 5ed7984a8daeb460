/**
 * The directory of live spaces between real `peerverse start` processes on 127.0.0.1: a public
 * space listed on A shows on a peer three hops away (each peer told only the one before) with its
 * live member count, is hidden by a block, cannot be listed when private, and goes when its owner
 * unlists it; and a flood of listings (many owners, oversized fields, bad signatures, forgeries
 * of a private space) stays bounded while the peer stays up, and goes no further than it.
 */
import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { DIRECTORY_TOPIC, MAX_DESCRIPTION_LENGTH, MAX_LISTING_BYTES, MAX_LISTINGS_PER_OWNER, type DirectoryStatus, type ListingView } from '../../src/directory/index.ts'
import { PeerSet, runCli, waitFor, type CliPeer } from '../helpers/cli-peer.ts'
import { seeded } from '../helpers/random.ts'
import { descriptor, lazyOwner, owner, signListing } from './fixtures.ts'

async function listings (p: CliPeer): Promise<ListingView[]> {
  return (await p.api.request<{ listings: ListingView[] }>('GET', '/api/v0/directory')).listings
}

async function status (p: CliPeer): Promise<DirectoryStatus> {
  return await p.api.request<DirectoryStatus>('GET', '/api/v0/directory/status')
}

describe('directory between real peers', () => {
  const peers = new PeerSet()
  after(async () => { await peers.cleanup() })

  it('a listed public space shows three hops away with its members, a block hides it, unlisting removes it', async () => {
    const a = await peers.start()
    const b = await peers.start({ bootstrap: [a.addr] })
    const c = await peers.start({ bootstrap: [b.addr] })
    const d = await peers.start({ bootstrap: [c.addr] })
    // Only neighbours in the chain may talk, so D hears of A through C and B alone (the DHT would
    // otherwise introduce them).
    const deny = async (p: CliPeer, others: CliPeer[]): Promise<void> => { await p.api.request('POST', '/api/v0/net/deny', { peers: others.map(o => o.ready.peerId) }) }
    await deny(a, [c, d])
    await deny(b, [d])
    await deny(c, [a])
    await deny(d, [a, b])
    const space = await a.api.request<{ id: string }>('POST', '/api/v0/space/create', { name: 'Plaza' })
    const pub = await runCli(['space', 'publish', space.id, '--description', 'an open square', '--tags', 'music,chat', '--data', a.dataDir])
    assert.equal(pub.code, 0, pub.stderr)
    assert.match(pub.stdout, /listed/)
    // A member arrives: the owner's count goes to 2, and the listing says so wherever it is.
    await b.api.request('POST', '/api/v0/space/join', { space: space.id })
    const seen = await waitFor('the listing with 2 present on D', async () => (await listings(d)).find(l => l.space === space.id && l.present === 2), 30_000)
    assert.equal(seen.name, 'Plaza')
    assert.equal(seen.description, 'an open square')
    assert.deepEqual(seen.tags, ['music', 'chat'])
    assert.equal(seen.owner, a.ready.did)
    assert.ok(seen.link.startsWith(`pv:space=${space.id}&peer=`), seen.link)
    assert.ok(seen.link.includes(a.ready.peerId), 'the link carries the owner peer')
    const explore = await runCli(['space', 'explore', '--data', d.dataDir])
    assert.equal(explore.code, 0, explore.stderr)
    assert.match(explore.stdout, /Plaza {2}2 here {2}\[music, chat\]/)
    assert.ok(explore.stdout.includes(seen.link))

    // A private space is refused, and nothing is listed.
    const den = await a.api.request<{ id: string }>('POST', '/api/v0/space/create', { name: 'Den', private: true })
    await assert.rejects(a.api.request('POST', '/api/v0/directory/publish', { space: den.id }), { code: 'PrivateSpaceListingError' })
    assert.equal((await listings(a)).some(l => l.space === den.id), false)

    // C blocks A: C shows nothing of A's; D still does.
    await waitFor('the listing on C', async () => (await listings(c)).some(l => l.space === space.id), 30_000)
    await c.api.request('POST', '/api/v0/social/block', { did: a.ready.did })
    assert.equal((await listings(c)).some(l => l.owner === a.ready.did), false)
    assert.ok((await listings(d)).some(l => l.space === space.id))

    const un = await runCli(['space', 'unpublish', space.id, '--data', a.dataDir])
    assert.equal(un.code, 0, un.stderr)
    await waitFor('the listing gone from D', async () => !(await listings(d)).some(l => l.space === space.id), 30_000)
    assert.equal((await listings(a)).length, 0)
  })

  it('a flood of listings stays bounded, each bad one dropped and counted, the peer stays up and forwards none of it', async () => {
    const t = await peers.start()
    const f = await peers.start({ bootstrap: [t.addr] })
    // G hears the flooder only through T: whatever T refuses must not reach G.
    const g = await peers.start({ bootstrap: [t.addr] })
    await g.api.request('POST', '/api/v0/net/deny', { peers: [f.ready.peerId] })
    const subscribed = async (p: CliPeer, other: CliPeer): Promise<boolean> => {
      const { peers: subs } = await p.api.request<{ peers: string[] }>('GET', `/api/v0/gossip/peers?topic=${encodeURIComponent(DIRECTORY_TOPIC)}`)
      return subs.includes(other.ready.peerId)
    }
    await waitFor('F to see T, and T to see G, on the directory topic', async () => await subscribed(f, t) && await subscribed(t, g), 30_000)
    const send = async (bytes: Uint8Array): Promise<void> => {
      await f.api.request('POST', '/api/v0/gossip/publish', { topic: DIRECTORY_TOPIC, dataBase64: Buffer.from(bytes).toString('base64') })
    }
    const counted = async (s: DirectoryStatus): Promise<number> => s.listings + Object.values(s.dropped).reduce((x, y) => x + y, 0)
    /** Sends one record and waits until T has taken it one way or the other. */
    const sendOne = async (bytes: Uint8Array): Promise<void> => {
      const before = await counted(await status(t))
      await send(bytes)
      await waitFor('T to take the record', async () => await counted(await status(t)) > before || undefined, 30_000)
    }

    const rich = await owner(11)
    const other = await owner(12)
    const lazy = lazyOwner(13)
    // One owner lists more spaces than a peer keeps of one owner.
    for (let i = 0; i < MAX_LISTINGS_PER_OWNER + 2; i++) {
      await sendOne(await signListing(rich, await descriptor(rich, `Space ${i}`), { seq: i + 1, ts: Date.now() }))
    }
    const richDescriptor = await descriptor(rich, 'Space 0')
    const good = await signListing(rich, richDescriptor)
    const badSig = good.slice()
    badSig[Buffer.from(good).indexOf(Buffer.from('sig')) + 6] ^= 0xff
    const bad: Array<[string, Uint8Array]> = [
      ['private', await signListing(rich, await descriptor(rich, 'Den', true))],
      ['notOwner', await signListing(other, richDescriptor)],
      ['oversized', await signListing(rich, await descriptor(rich, 'Big'), { description: 'x'.repeat(MAX_DESCRIPTION_LENGTH + 1) })],
      ['oversized', new Uint8Array(MAX_LISTING_BYTES + 1)],
      ['invalid', badSig],
      ['work', await signListing(lazy, await descriptor(lazy, 'Spam'))]
    ]
    for (const [, bytes] of bad) await sendOne(bytes)
    const s = await status(t)
    assert.equal(s.listings, MAX_LISTINGS_PER_OWNER, 'one owner holds at most its bound')
    assert.ok((s.dropped.evicted ?? 0) >= 2, `evicted ${JSON.stringify(s.dropped)}`)
    for (const [reason] of bad) assert.ok((s.dropped[reason] ?? 0) >= 1, `${reason} dropped: ${JSON.stringify(s.dropped)}`)
    assert.equal((await listings(t)).some(l => l.name === 'Den'), false)
    // What T accepted went on to G; what it refused did not.
    await waitFor('G to hold the owner\'s listings', async () => (await status(g)).listings === MAX_LISTINGS_PER_OWNER, 30_000)

    // Then junk as fast as it can be sent: the rate limit drops most of it before any check.
    const rand = seeded(15)
    const rejectedBefore = (await t.api.request<{ rejected: number }>('GET', '/api/v0/status')).rejected
    for (let i = 0; i < 300; i++) await send(rand.bytes(200 + rand.int(2000)))
    await waitFor('T to rate-limit the flood', async () => ((await status(t)).dropped.rateLimited ?? 0) > 0, 30_000)
    const after = await status(t)
    assert.equal(after.listings, MAX_LISTINGS_PER_OWNER)
    const st = await t.api.request<{ rejected: number, peerId: string }>('GET', '/api/v0/status')
    assert.ok(st.rejected > rejectedBefore, 'the flooding peer is reported')
    assert.equal(st.peerId, t.ready.peerId)
    const gs = await status(g)
    assert.equal(gs.listings, MAX_LISTINGS_PER_OWNER)
    for (const reason of ['private', 'notOwner', 'oversized', 'invalid', 'work', 'rateLimited']) {
      assert.equal(gs.dropped[reason] ?? 0, 0, `G saw ${reason} records that T should have stopped: ${JSON.stringify(gs.dropped)}`)
    }
  })
})
