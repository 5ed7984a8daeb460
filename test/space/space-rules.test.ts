/**
 * The rules of a space, enforced by every honest peer (real nodes on loopback, in one process so
 * a test can play the dishonest one by publishing crafted bytes): a non-editor's object update, a
 * forged signature and a banned member's messages are rejected everywhere; parcel owners edit
 * inside their parcel; a private space shows a relaying non-member no plaintext, and a removed
 * member cannot read what is sent after the removal.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as dagCbor from '@ipld/dag-cbor'
import * as Y from 'yjs'
import { createNode, type PeerverseNode, type RejectedEvent } from '../../src/node/node.ts'
import { defaultConfig, mergeConfig } from '../../src/node/config.ts'
import { initIdentity } from '../../src/identity/keystore.ts'
import { devnetGenesis, genesisJson } from '../../src/ledger/genesis.ts'
import { createChat, createWorldRecord } from '../../src/space/records.ts'
import { spaceTopic } from '../../src/space/index.ts'
import { placeObject, World } from '../../src/space/world.ts'
import { waitFor } from '../helpers/cli-peer.ts'

const MODEL = 'bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy'
const OBJ = { model: MODEL, position: [10, 0, 10] as [number, number, number], rotation: [0, 0, 0, 1] as [number, number, number, number], scale: [1, 1, 1] as [number, number, number], props: {} }

const dirs: string[] = []
const nodes: PeerverseNode[] = []

async function startNode (options: { dir?: string, genesis?: string } = {}): Promise<PeerverseNode> {
  const dir = options.dir ?? await mkdtemp(join(tmpdir(), 'peerverse-space-'))
  if (options.dir == null) dirs.push(dir)
  const n = await createNode(mergeConfig(defaultConfig(dir), { discovery: { mdns: false }, listen: ['/ip4/127.0.0.1/tcp/0'], api: false, dht: { mode: 'server' }, relay: { server: false }, ledger: { genesis: options.genesis } }))
  await n.start()
  nodes.push(n)
  return n
}

async function mesh (list: PeerverseNode[]): Promise<void> {
  for (let i = 0; i < list.length; i++) {
    for (let k = i + 1; k < list.length; k++) await list[i].connect(list[k].addresses().find(a => a.includes('/tcp/'))!)
  }
}

/** Rejections a node reports, to wait on. */
function rejections (n: PeerverseNode): RejectedEvent[] {
  const out: RejectedEvent[] = []
  n.addEventListener('peer:rejected', evt => { out.push(evt.detail) })
  return out
}

/** Waits until `n` has peers subscribed to the space topic (the gossip mesh is up). */
async function topicReady (n: PeerverseNode, space: string, peers: number): Promise<void> {
  await waitFor('gossip subscribers', () => n.topicPeers(spaceTopic(space)).length >= peers, 20_000, 50)
}

after(async () => {
  for (const n of nodes) await n.stop().catch(() => {})
  for (const d of dirs) await rm(d, { recursive: true, force: true })
})

describe('edit rights and moderation, enforced by every honest peer', { timeout: 120_000 }, () => {
  let owner: PeerverseNode, editor: PeerverseNode, stranger: PeerverseNode
  let space = ''
  let ownerRejects: RejectedEvent[], editorRejects: RejectedEvent[]

  before(async () => {
    owner = await startNode()
    editor = await startNode()
    stranger = await startNode()
    ownerRejects = rejections(owner)
    editorRejects = rejections(editor)
    await mesh([owner, editor, stranger])
    space = (await owner.space.create({ name: 'Workshop' })).id
    await editor.space.join(space, { name: 'ed' })
    await stranger.space.join(space, { name: 'st' })
    await topicReady(owner, space, 2)
    await topicReady(editor, space, 2)
    await topicReady(stranger, space, 2)
    await owner.space.setPolicy(space, { addEditors: [editor.did] })
    await waitFor('the editor knows it is one', () => editor.space.view(space).policy.editors.includes(editor.did), 10_000, 50)
  })

  it('an editor places an object and it appears everywhere', async () => {
    const id = await editor.space.place(space, OBJ)
    for (const n of [owner, stranger]) {
      await waitFor('the object arrives', () => n.space.objects(space).some(o => o.id === id), 10_000, 50)
    }
  })

  it('a non-editor cannot place locally, and its crafted update is rejected by every honest peer', async () => {
    await assert.rejects(stranger.space.place(space, OBJ, 'sneaky'), { name: 'EditNotAllowedError' })
    // Play the dishonest peer: build a valid Yjs update as the stranger and publish it signed.
    const update = placeObject(new World(), stranger.did, 'sneaky', OBJ)
    const rec = await createWorldRecord(stranger.identity.userKey, space, update)
    await stranger.publish(spaceTopic(space), dagCbor.encode({ t: 'world', d: rec.bytes }))
    for (const list of [ownerRejects, editorRejects]) {
      await waitFor('rejected as not allowed', () => list.some(r => /EditNotAllowedError/.test(r.error)), 10_000, 50)
    }
    for (const n of [owner, editor]) assert.ok(!n.space.objects(space).some(o => o.id === 'sneaky'))
  })

  it('a forged signature is rejected by every honest peer', async () => {
    const update = placeObject(new World(), editor.did, 'forged', OBJ)
    const rec = await createWorldRecord(editor.identity.userKey, space, update)
    const decoded = dagCbor.decode(rec.bytes) as { sig: Uint8Array }
    decoded.sig[0] ^= 1
    await stranger.publish(spaceTopic(space), dagCbor.encode({ t: 'world', d: dagCbor.encode(decoded) }))
    for (const list of [ownerRejects, editorRejects]) {
      await waitFor('rejected as badly signed', () => list.some(r => /InvalidSignatureError/.test(r.error)), 10_000, 50)
    }
    for (const n of [owner, editor]) assert.ok(!n.space.objects(space).some(o => o.id === 'forged'))
  })

  it('a banned member\'s messages are dropped by every honest peer', async () => {
    await owner.space.setPolicy(space, { ban: [stranger.did] })
    await waitFor('the editor has the ban', () => editor.space.view(space).policy.banned.includes(stranger.did), 10_000, 50)
    const chat = await createChat(stranger.identity.userKey, space, 'let me in')
    await stranger.publish(spaceTopic(space), dagCbor.encode({ t: 'chat', d: chat.bytes }))
    for (const list of [ownerRejects, editorRejects]) {
      await waitFor('dropped as banned', () => list.some(r => /ExcludedError/.test(r.error) && r.error.includes(stranger.did)), 10_000, 50)
    }
    for (const n of [owner, editor]) {
      assert.ok(!n.space.chat(space).some(c => c.text === 'let me in'))
      assert.ok(!n.space.who(space).some(m => m.did === stranger.did), 'the banned member is gone from the roster')
    }
  })

  it('a muted member\'s chat and a kicked member\'s messages are dropped', async () => {
    const [muted, kicked] = [await startNode(), await startNode()]
    await mesh([owner, editor, muted, kicked])
    await muted.space.join(space)
    await kicked.space.join(space)
    await owner.space.setPolicy(space, { mute: [muted.did], kick: [kicked.did] })
    await waitFor('the editor has the policy', () => editor.space.view(space).policy.muted.includes(muted.did), 10_000, 50)
    assert.ok(editor.space.view(space).policy.kicked[kicked.did] > Date.now(), 'kicked for a while')
    await waitFor('both know', () => muted.space.view(space).policy.muted.includes(muted.did) && kicked.space.isRemoved(space), 10_000, 50)
    await assert.rejects(muted.space.say(space, 'can you hear me'), { name: 'ExcludedError' })
    for (const [who, text] of [[muted, 'muted words'], [kicked, 'kicked words']] as const) {
      const chat = await createChat(who.identity.userKey, space, text)
      await who.publish(spaceTopic(space), dagCbor.encode({ t: 'chat', d: chat.bytes }))
    }
    for (const list of [ownerRejects, editorRejects]) {
      await waitFor('both dropped', () => list.some(r => r.error.includes(`${muted.did} is muted`)) && list.some(r => /ExcludedError/.test(r.error) && r.error.includes(kicked.did)), 10_000, 50)
    }
    for (const n of [owner, editor]) assert.ok(!n.space.chat(space).some(c => c.text === 'muted words' || c.text === 'kicked words'))
  })

  it('edits made before the owner took an editor\'s rights away stay valid, also for a late joiner', async () => {
    const id = await editor.space.place(space, { ...OBJ, position: [40, 0, 40] }, 'kept')
    await waitFor('the owner has it', () => owner.space.objects(space).some(o => o.id === id), 10_000, 50)
    await owner.space.setPolicy(space, { removeEditors: [editor.did] })
    assert.ok(owner.space.view(space).policy.revoked[editor.did] > 0, 'the policy keeps the clock the rights ended at')
    const late = await startNode()
    await mesh([owner, late])
    await late.space.join(space)
    const ids = (n: PeerverseNode): string => n.space.objects(space).map(o => `${o.id}@${o.position.join()}`).sort().join(' ')
    await waitFor('the late joiner has the same world as the owner', () => ids(late) === ids(owner) && ids(late).includes('kept@40,0,40'), 20_000, 50)
    // Anything the former editor makes now is refused.
    await waitFor('the editor knows', () => !editor.space.view(space).policy.editors.includes(editor.did), 10_000, 50)
    await assert.rejects(editor.space.place(space, OBJ, 'too-late'), { name: 'EditNotAllowedError' })
  })

  it('only the owner changes the policy', async () => {
    await assert.rejects(editor.space.setPolicy(space, { addEditors: [stranger.did] }), { name: 'NotSpaceOwnerError' })
  })
})

describe('land parcels on the ledger grant edit rights inside them', { timeout: 120_000 }, () => {
  let owner: PeerverseNode, landlord: PeerverseNode, other: PeerverseNode
  let space = ''
  let otherRejects: RejectedEvent[]

  before(async () => {
    // One chain for all three: the owner's peer is its single validator, the others follow it.
    const dirsFor = await Promise.all([0, 1, 2].map(async () => await mkdtemp(join(tmpdir(), 'peerverse-space-'))))
    dirs.push(...dirsFor)
    const validator = (await initIdentity(dirsFor[0])).did
    const genesis = join(dirsFor[0], 'shared-genesis.json')
    await writeFile(genesis, genesisJson(devnetGenesis([validator])))
    owner = await startNode({ dir: dirsFor[0], genesis })
    landlord = await startNode({ dir: dirsFor[1], genesis })
    other = await startNode({ dir: dirsFor[2], genesis })
    otherRejects = rejections(other)
    await mesh([owner, landlord, other])
    space = (await owner.space.create({ name: 'Market' })).id
    await landlord.space.join(space)
    await other.space.join(space)
    await topicReady(owner, space, 2)
    await topicReady(other, space, 2)
    const funded = await owner.ledger.faucet(landlord.did)
    await waitFor('funded', async () => (await landlord.ledger.txStatus(funded.id)).status === 'committed', 30_000, 100)
    // Land in a space is its owner's to give: the owner grants the landlord the parcel's rectangle
    // (the grant carries the space's record, which proves the space and its owner to the ledger).
    const grant = await owner.ledger.submitOwn({ kind: 'land-grant', space, to: landlord.did, x: 100, y: 100, w: 20, h: 20, record: owner.space.descriptorBytes(space) })
    await waitFor('granted', async () => (await owner.ledger.txStatus(grant.id)).status === 'committed', 30_000, 100)
    await waitFor('the landlord sees the grant', () => landlord.ledger.grantsTo(landlord.did).length === 1, 30_000, 100)
    const claim = await landlord.ledger.submitOwn({ kind: 'claim', space, x: 100, y: 100, w: 20, h: 20 })
    await waitFor('the parcel is claimed on every peer', async () => {
      for (const n of [owner, landlord, other]) if (!n.ledger.parcelsOf(landlord.did).some(p => p.space === space)) return false
      return true
    }, 30_000, 100)
    assert.equal((await landlord.ledger.txStatus(claim.id)).status, 'committed')
  })

  it('the parcel owner places and moves objects inside it; everyone accepts', async () => {
    const id = await landlord.space.place(space, { ...OBJ, position: [105, 0, 110] })
    await landlord.space.moveObject(space, id, { position: [118, 0, 119] })
    for (const n of [owner, other]) {
      await waitFor('the stall arrives', () => n.space.objects(space).find(o => o.id === id)?.position[0] === 118, 10_000, 50)
    }
  })

  it('outside the parcel, or moving out of it, is refused locally and by every honest peer', async () => {
    await assert.rejects(landlord.space.place(space, { ...OBJ, position: [90, 0, 110] }), { name: 'EditNotAllowedError' })
    const inside = await landlord.space.place(space, { ...OBJ, position: [101, 0, 101] })
    await assert.rejects(landlord.space.moveObject(space, inside, { position: [99, 0, 101] }), { name: 'EditNotAllowedError' })
    // Crafted and sent anyway: the others refuse it.
    const mirror = new World()
    Y.applyUpdate(mirror.doc, landlord.space.worldState(space))
    const update = placeObject(mirror, landlord.did, 'outside', { ...OBJ, position: [10, 0, 10] })
    const rec = await createWorldRecord(landlord.identity.userKey, space, update)
    await landlord.publish(spaceTopic(space), dagCbor.encode({ t: 'world', d: rec.bytes }))
    await waitFor('refused', () => otherRejects.some(r => /EditNotAllowedError/.test(r.error)), 10_000, 50)
    assert.ok(!other.space.objects(space).some(o => o.id === 'outside'))
  })
})

describe('a private space', { timeout: 120_000 }, () => {
  let owner: PeerverseNode, member: PeerverseNode, relay: PeerverseNode
  let space = ''
  const wire: Uint8Array[] = []
  let memberRejects: RejectedEvent[]

  before(async () => {
    owner = await startNode()
    member = await startNode()
    relay = await startNode()
    memberRejects = rejections(member)
    await mesh([owner, member, relay])
    space = (await owner.space.create({ name: 'Consultation', private: true })).id
    await owner.space.setPolicy(space, { addMembers: [member.did] })
    await member.space.join(space, { name: 'patient' })
    // The relay knows the id and forwards the topic's gossip, but is no member.
    await assert.rejects(relay.space.join(space), { name: 'NotAMemberError' })
    relay.net.services.pubsub.addEventListener('message', evt => {
      if (evt.detail.topic === spaceTopic(space)) wire.push(evt.detail.data)
    })
    relay.subscribe(spaceTopic(space))
    await topicReady(owner, space, 2)
    await topicReady(member, space, 2)
  })

  it('members read each other; a relaying non-member sees no plaintext on the wire', async () => {
    const secret = 'the results are fine, no need to worry'
    await owner.space.say(space, secret)
    await waitFor('the member reads it', () => member.space.chat(space).some(c => c.text === secret), 10_000, 50)
    const id = await owner.space.place(space, { ...OBJ, props: { label: 'examination table' } })
    await waitFor('the member sees the object', () => member.space.objects(space).some(o => o.id === id), 10_000, 50)
    await waitFor('the relay got the traffic', () => wire.length >= 3, 10_000, 50)
    const all = Buffer.concat(wire.map(b => Buffer.from(b)))
    for (const plain of [secret, 'examination table', MODEL, 'patient']) {
      assert.equal(all.indexOf(Buffer.from(plain)), -1, `"${plain}" is not on the wire`)
    }
  })

  it('a removed member cannot read what is sent after the removal', async () => {
    const before = owner.space.epoch(space)
    await owner.space.setPolicy(space, { removeMembers: [member.did] })
    assert.equal(owner.space.epoch(space), before + 1, 'removal rotates the key')
    await waitFor('the member learns it was removed', () => member.space.isRemoved(space), 10_000, 50)
    const later = 'said after the removal'
    const seen = wire.length
    await owner.space.say(space, later)
    await waitFor('the relay forwarded it', () => wire.length > seen, 10_000, 50)
    await waitFor('the member cannot open it', () => memberRejects.some(r => /UnknownEpochError|DecryptError/.test(r.error)), 10_000, 50)
    assert.ok(!member.space.chat(space).some(c => c.text === later))
  })
})
