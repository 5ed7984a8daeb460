/**
 * Space links that carry a way in: a link holding a peer's address lets a peer that knows no one
 * (no bootstrap at all) join that peer's space, by the CLI's code and by the browser client's URL
 * through the API; a space's link names this peer and, once seen, other members. Bad links get
 * named errors: malformed (InvalidLinkError), too many peers, the wrong kind (WrongLinkKindError),
 * peers unreachable or without the space (SpaceNotFoundError naming the link's peers), and a
 * linked peer that lies about the space (reported, nothing stored).
 */
import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import * as dagCbor from '@ipld/dag-cbor'
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import { readApiInfo } from '../../src/api/server.ts'
import { ed25519KeyFromSeed } from '../../src/identity/ed25519.ts'
import { InvalidLinkError, linkPeerId, MAX_LINK_PEERS, parseLink } from '../../src/net/links.ts'
import { createDescriptor } from '../../src/space/records.ts'
import { JOIN_TIMEOUT_MS, MAX_LINK_OTHER_HOLDERS, SPACE_PROTOCOL } from '../../src/space/index.ts'
import { MIN_LOOKUP_TIMEOUT_MS } from '../../src/node/config.ts'
import type { Joined, SpaceCore } from '../../src/space/joined.ts'
import { spaceLink } from '../../src/space/share.ts'
import { PeerSet, runCli, waitFor, type CliPeer } from '../helpers/cli-peer.ts'
import { LocalPeers } from '../helpers/local-peers.ts'
import { seededBytes } from '../helpers/random.ts'
import { closedPort, refusal } from '../helpers/refusals.ts'

/** The CID of the raw bytes "hello world". */
const HELLO_CID = 'bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e'
/** How long joiners here look for a peer with the space (space.joinTimeoutMs, default JOIN_TIMEOUT_MS): short, to keep the failing joins short. */
const JOIN_DEADLINE_MS = MIN_LOOKUP_TIMEOUT_MS * 3

const set = new PeerSet()
const local = new LocalPeers('space-links')
after(async () => {
  await set.cleanup()
  await local.stop()
})

async function peersOf (p: CliPeer): Promise<unknown[]> {
  return (await p.api.request<{ peers: unknown[] }>('GET', '/api/v0/peers')).peers
}

/** An API call's refusal: its status and error name. */
describe('space links', { timeout: 300_000 }, () => {
  it(`name this peer and at most MAX_LINK_OTHER_HOLDERS (${MAX_LINK_OTHER_HOLDERS}) other members, the most recently seen`, async () => {
    const ids: string[] = []
    for (let i = 0; i < MAX_LINK_OTHER_HOLDERS + 5; i++) ids.push(peerIdFromPrivateKey(await generateKeyPairFromSeed('Ed25519', seededBytes(32, 170 + i))).toString())
    const [self, ...others] = ids
    const core = { protocols: { peerId: self, addresses: () => ['/ip4/0.0.0.0/tcp/4001', '/ip4/127.0.0.1/tcp/4001', '/ip4/192.168.1.9/tcp/4001'] } } as unknown as SpaceCore
    // Members seen at increasing times; one without addresses, one whose addresses are all unusable.
    const members = new Map(others.map((peer, i) => [`did:${i}`, { peer, seenAt: 1000 + i, addrs: i === others.length - 1 ? [] : i === others.length - 2 ? ['/ip4/127.0.0.1/tcp/5/p2p/' + self] : [`/ip4/127.0.0.1/tcp/${5000 + i}`] }]))
    const j = { d: { id: 'bafyspace' }, presence: { members } } as unknown as Joined
    const link = spaceLink(core, j)
    assert.equal(link.kind, 'space')
    const named = link.peers.map(linkPeerId)
    assert.deepEqual(link.peers.slice(0, 2), [`/ip4/192.168.1.9/tcp/4001/p2p/${self}`, `/ip4/127.0.0.1/tcp/4001/p2p/${self}`], 'our own addresses first, LAN before loopback, never 0.0.0.0')
    const rest = named.filter(p => p !== self)
    assert.equal(rest.length, MAX_LINK_OTHER_HOLDERS)
    // The newest members with a usable address: others[n-3], others[n-4], ... (the last two have none).
    assert.deepEqual(rest, others.slice(0, others.length - 2).reverse().slice(0, MAX_LINK_OTHER_HOLDERS))
    assert.ok(link.peers.length <= MAX_LINK_PEERS)
  })

  it('let a peer that knows no one join a space (CLI code and browser link), and name other members', async () => {
    // Three peers with no bootstrap (and no mDNS): B and C know no one until they open A's links.
    const [a, b, c] = await Promise.all([set.start(), set.start(), set.start()])
    const { id } = await a.api.request<{ id: string }>('POST', '/api/v0/space/create', { name: 'Hall' })
    await a.api.request('POST', '/api/v0/space/say', { space: id, text: 'hello from A' })

    const made = await runCli(['space', 'link', id, '--json', '--data', a.dataDir])
    assert.equal(made.code, 0, made.stderr)
    const { code, link } = JSON.parse(made.stdout) as { code: string, link: string }
    assert.ok(code.startsWith(`pv:space=${id}&peer=`), code)
    const origin = (await readApiInfo(a.dataDir)).url
    assert.ok(link.startsWith(`${origin}/#space=${id}&peer=`), link)
    const parsed = parseLink(code)
    assert.ok(parsed.peers.length >= 1 && parsed.peers.length <= MAX_LINK_PEERS)
    assert.ok(parsed.peers.every(p => linkPeerId(p) === a.ready.peerId), 'the link names A only (no other member yet)')

    // B has no bootstrap: it knows no one until the link.
    assert.deepEqual(await peersOf(b), [])
    const joined = await runCli(['space', 'join', code, '--json', '--data', b.dataDir])
    assert.equal(joined.code, 0, joined.stderr)
    assert.equal((JSON.parse(joined.stdout) as { id: string }).id, id)
    await waitFor("A's chat on B", async () => {
      const { chat } = await b.api.request<{ chat: Array<{ text: string }> }>('GET', `/api/v0/space/${id}/chat`)
      return chat.some(c => c.text === 'hello from A')
    })

    // C knows no one either, and opens the browser client's URL through the API.
    assert.deepEqual(await peersOf(c), [])
    const view = await c.api.request<{ id: string, name: string }>('POST', '/api/v0/space/join', { link })
    assert.equal(view.id, id)
    assert.equal(view.name, 'Hall')

    // C's own link names C first, then members it has seen (from their signed beacons).
    await waitFor("another member in C's link", async () => {
      const mine = await c.api.request<{ code: string }>('GET', `/api/v0/space/link?id=${id}`)
      const ids = parseLink(mine.code).peers.map(linkPeerId)
      assert.equal(ids[0], c.ready.peerId)
      return ids.includes(a.ready.peerId) || ids.includes(b.ready.peerId)
    }, 60_000)
  })

  it('refuses bad links with named errors and says which peers were tried', async () => {
    assert.ok(JOIN_DEADLINE_MS < JOIN_TIMEOUT_MS)
    const [a, b, n] = await Promise.all([set.start(), set.start({ config: { space: { joinTimeoutMs: JOIN_DEADLINE_MS } } }), set.start()])
    const { id } = await a.api.request<{ id: string }>('POST', '/api/v0/space/create', { name: 'Yard' })
    const { code } = await a.api.request<{ code: string }>('GET', `/api/v0/space/link?id=${id}`)
    const join = async (link: string): Promise<unknown> => await b.api.request('POST', '/api/v0/space/join', { link })

    let r = await refusal(join('pv:space=not an id&peer=x'))
    assert.deepEqual([r.status, r.code], [400, 'InvalidLinkError'])
    const cli = await runCli(['space', 'join', 'pv:space=', '--data', b.dataDir])
    assert.equal(cli.code, 1)
    assert.match(cli.stderr, /a space link names a space id/)

    // One peer past MAX_LINK_PEERS is refused, not truncated.
    const addr = parseLink(code).peers[0]
    r = await refusal(join(`pv:space=${id}${`&peer=${encodeURIComponent(addr)}`.repeat(MAX_LINK_PEERS + 1)}`))
    assert.deepEqual([r.status, r.code], [400, 'InvalidLinkError'])
    assert.match(r.message, new RegExp(`at most ${MAX_LINK_PEERS} peers`))

    // The wrong kind for the command.
    r = await refusal(join(`pv:content=${HELLO_CID}&peer=${encodeURIComponent(addr)}`))
    assert.deepEqual([r.status, r.code], [400, 'WrongLinkKindError'])
    r = await refusal(b.api.request('POST', '/api/v0/content/fetch', { link: code }))
    assert.deepEqual([r.status, r.code], [400, 'WrongLinkKindError'])
    assert.deepEqual(await peersOf(b), [], 'a refused link dials no one')

    // A's id at a port where no one listens, and a peer that does not hold the space: both are
    // asked, then the DHT and connected peers; the error names the link's peers.
    const unreachable = `/ip4/127.0.0.1/tcp/${await closedPort()}/p2p/${a.ready.peerId}`
    r = await refusal(join(`pv:space=${id}&peer=${encodeURIComponent(unreachable)}&peer=${encodeURIComponent(n.addr)}`))
    assert.deepEqual([r.status, r.code], [404, 'SpaceNotFoundError'])
    assert.match(r.message, /the link's 2 peers/)
    assert.ok(r.message.includes(a.ready.peerId) && r.message.includes(n.ready.peerId), r.message)
    assert.deepEqual((await b.api.request<{ spaces: unknown[] }>('GET', '/api/v0/space')).spaces, [])
    assert.throws(() => parseLink('pv:space=&peer='), InvalidLinkError)
  })

  it('checks what a linked peer answers: a liar is reported and nothing is stored', async () => {
    const joiner = await local.startNode({ space: { joinTimeoutMs: JOIN_DEADLINE_MS } })
    const target = await createDescriptor(ed25519KeyFromSeed(seededBytes(32, 151)), { name: 'Wanted', created: 1 })
    const other = await createDescriptor(ed25519KeyFromSeed(seededBytes(32, 152)), { name: 'Decoy', created: 1 })
    // A bare peer that answers every space request with another space's descriptor.
    const liar = await local.newPeer(['/ip4/127.0.0.1/tcp/0'])
    await liar.handle(SPACE_PROTOCOL, async stream => {
      const lp = lpStream(stream)
      try {
        await lp.read()
        await lp.write(dagCbor.encode({ descriptor: other.bytes, policy: null, keys: [] }))
        await stream.close()
      } catch (err) {
        stream.abort(err as Error)
      }
    })
    const liarAddr = liar.getMultiaddrs().find(m => m.toString().includes('/tcp/'))?.toString() as string
    await assert.rejects(joiner.space.join(target.id, { peers: [liarAddr] }), (err: Error) => {
      assert.equal(err.name, 'SpaceNotFoundError')
      assert.match(err.message, /the link's 1 peer/)
      return true
    })
    const rejected = local.rejections.get(joiner) ?? []
    assert.ok(rejected.some(e => e.peerId === liar.peerId.toString() && e.protocol === SPACE_PROTOCOL && /InvalidSpaceRecordError/.test(e.error)), JSON.stringify(rejected))
    assert.equal(await joiner.space.store.get('s', target.id), undefined)
    assert.equal(await joiner.space.store.get('s', other.id), undefined)
    assert.equal(joiner.space.isJoined(target.id), false)
  })
})
