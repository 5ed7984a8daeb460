/**
 * A flood of throwaway identities against a real peer: the owner of a public space holds a
 * 500-message history (its own and a long-standing member's, on disk), and another peer publishes
 * chat from hundreds of fresh keys on the space's topic, as `POST /api/v0/gossip/publish` lets it.
 * Without an admission proof none is heard; with proofs, the newcomers are kept apart and evict
 * nothing of the known history, which is still whole after a restart, and the member is still
 * heard. A lying peer answers a joiner's sync with hundreds of identities it holds no proof of: the
 * joiner keeps few of them and loses nothing of the owner's or a proven newcomer's. Then the sender's side: a member saying more than the receivers take is told at once
 * (SpaceRateLimitError) and the other member gets exactly what it was told was sent, and the same
 * for world edits. In-process nodes on 127.0.0.1, real LevelDB and libp2p.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as dagCbor from '@ipld/dag-cbor'
import { ed25519KeyFromSeed } from '../../src/identity/ed25519.ts'
import { createNode, type PeerverseNode, type RejectedEvent } from '../../src/node/node.ts'
import { defaultConfig, mergeConfig } from '../../src/node/config.ts'
import { solveAdmission } from '../../src/space/admission.ts'
import { CHAT_BURST, CHAT_PEER_BURST, CHAT_SEND_MARGIN, MAX_CHAT_HISTORY, MAX_SYNC_NEW_AUTHORS, spaceTopic, WORLD_SEND_MARGIN, WORLD_UPDATE_BURST, WORLD_UPDATES_PER_SECOND } from '../../src/space/index.ts'
import { createBeacon, createChat, type Chat } from '../../src/space/records.ts'
import { SpaceStore } from '../../src/space/store.ts'
import { Store } from '../../src/store/store.ts'
import { seeded } from '../helpers/random.ts'
import { waiter } from '../helpers/local-peers.ts'

const STEP_MS = 30_000
const MODEL = 'bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy'
/** Fresh identities in the flood without proofs (the attack as it was seen), and with proofs. */
const FLOOD_IDENTITIES = 600
const PROVEN_SYBILS = 8
/** Fresh identities a lying peer answers a joiner's sync with. */
const LIAR_STRANGERS = 500
const eventually = waiter({ timeoutMs: STEP_MS, intervalMs: 25 })

const dirs: string[] = []
const running = new Set<PeerverseNode>()
const rejections = new Map<PeerverseNode, RejectedEvent[]>()

/** A started node on 127.0.0.1 over `dir` (a new one if not given), its rejections logged. */
async function startAt (dir?: string): Promise<PeerverseNode> {
  const d = dir ?? await mkdtemp(join(tmpdir(), 'peerverse-space-flood-'))
  if (dir == null) dirs.push(d)
  const node = await createNode(mergeConfig(defaultConfig(d), { discovery: { mdns: false }, listen: ['/ip4/127.0.0.1/tcp/0'], api: false, dht: { mode: 'server' }, relay: { server: false } }))
  const log: RejectedEvent[] = []
  rejections.set(node, log)
  node.addEventListener('peer:rejected', evt => { log.push(evt.detail) })
  await node.start()
  running.add(node)
  return node
}

async function stopNode (node: PeerverseNode): Promise<void> {
  running.delete(node)
  await node.stop()
}

const tcpAddr = (n: PeerverseNode): string => n.addresses().find(a => a.includes('/tcp/')) as string

after(async () => {
  for (const n of running) await n.stop().catch(() => {})
  for (const d of dirs) await rm(d, { recursive: true, force: true })
})

describe('a flood of fresh identities against a space with a history', { timeout: 300_000 }, () => {
  let owner: PeerverseNode
  let member: PeerverseNode
  let mallory: PeerverseNode
  let ownerDir = ''
  let space = ''
  let topic = ''
  const history: Chat[] = []
  const rnd = seeded(1402)

  const gossipRejections = (node: PeerverseNode, peer: string, since = 0): RejectedEvent[] =>
    (rejections.get(node) ?? []).slice(since).filter(r => r.peerId === peer && r.protocol === `gossip:${topic}`)

  async function connectAll (): Promise<void> {
    await owner.connect(tcpAddr(member), { signal: AbortSignal.timeout(STEP_MS) })
    await owner.connect(tcpAddr(mallory), { signal: AbortSignal.timeout(STEP_MS) })
    await member.connect(tcpAddr(mallory), { signal: AbortSignal.timeout(STEP_MS) })
    await eventually('the gossip mesh is up', () => owner.topicPeers(topic).includes(member.peerId) && owner.topicPeers(topic).includes(mallory.peerId) &&
      mallory.topicPeers(topic).includes(owner.peerId) && member.topicPeers(topic).includes(owner.peerId))
  }

  before(async () => {
    owner = await startAt()
    ownerDir = dirs[0]
    member = await startAt()
    mallory = await startAt()
    space = (await owner.space.create({ name: 'Old town', displayName: 'owner' })).id
    topic = spaceTopic(space)
    // The owner's history from before: 400 of its own messages and 100 of a long-standing member's, on disk.
    await owner.connect(tcpAddr(member), { signal: AbortSignal.timeout(STEP_MS) })
    await member.space.join(space, { name: 'member' })
    const t0 = Date.now() - 3600_000
    for (let i = 0; i < MAX_CHAT_HISTORY; i++) {
      const key = i % 5 === 4 ? member.identity.userKey : owner.identity.userKey
      history.push(await createChat(key, space, `history ${i}`, t0 + i * 1000))
    }
    await stopNode(owner)
    const store = await Store.open(ownerDir)
    try {
      const spaces = new SpaceStore(store.sublevel('space'))
      for (const c of history) await spaces.addChat(space, { area: 'known', ts: c.ts, id: c.id, bytes: c.bytes })
    } finally {
      await store.close()
    }
    owner = await startAt(ownerDir)
    // Mallory is in no space: it only publishes on the topic, as the gossip API lets any peer.
    mallory.subscribe(topic)
    await connectAll()
  })

  const historyKept = (node: PeerverseNode): number => {
    const ids = new Set(node.space.chat(space).map(c => c.id))
    return history.filter(c => ids.has(c.id)).length
  }

  it(`the history of ${MAX_CHAT_HISTORY} messages is there before the flood`, () => {
    assert.equal(historyKept(owner), MAX_CHAT_HISTORY)
  })

  it(`${FLOOD_IDENTITIES} chats from ${FLOOD_IDENTITIES} fresh keys without admission proofs: none is heard, the history is whole`, async () => {
    const since = (rejections.get(owner) ?? []).length
    for (let i = 0; i < FLOOD_IDENTITIES; i++) {
      const key = ed25519KeyFromSeed(rnd.bytes(32))
      const chat = await createChat(key, space, `spam ${i}`)
      await mallory.publish(topic, dagCbor.encode({ t: 'chat', d: chat.bytes }))
    }
    await eventually(`the owner refused all ${FLOOD_IDENTITIES}`, () => gossipRejections(owner, mallory.peerId, since).length >= FLOOD_IDENTITIES)
    const names = new Set(gossipRejections(owner, mallory.peerId, since).map(r => r.error.split(':')[0]))
    assert.deepEqual([...names].sort(), ['AdmissionRequiredError', 'SpaceRateLimitError'])
    assert.equal(gossipRejections(owner, mallory.peerId, since).slice(0, CHAT_PEER_BURST).filter(r => r.error.startsWith('AdmissionRequiredError')).length, CHAT_PEER_BURST,
      'within its peer limit each one is refused for want of a proof')
    assert.ok(!owner.space.chat(space).some(c => c.text.startsWith('spam')), 'no spam is kept')
    assert.equal(historyKept(owner), MAX_CHAT_HISTORY)
  })

  it(`${PROVEN_SYBILS} fresh keys that paid their proofs: heard as newcomers, and they evict nothing of the history, on disk too`, async () => {
    const since = (rejections.get(owner) ?? []).length
    const sybils = Array.from({ length: PROVEN_SYBILS }, () => ed25519KeyFromSeed(rnd.bytes(32)))
    const proofs = []
    for (const k of sybils) proofs.push(await solveAdmission(space, (await createChat(k, space, 'x')).author))
    let sent = 0
    for (let round = 0; round < 2 * CHAT_BURST; round++) {
      for (let s = 0; s < sybils.length; s++) {
        const chat = await createChat(sybils[s], space, `proven spam ${s}/${round}`)
        await mallory.publish(topic, dagCbor.encode({ t: 'chat', d: chat.bytes, w: proofs[s] }))
        sent++
      }
    }
    const heard = (): number => owner.space.chat(space).filter(c => c.text.startsWith('proven spam')).length
    await eventually('every proven message was taken or refused', () => heard() + gossipRejections(owner, mallory.peerId, since).length >= sent)
    assert.ok(heard() >= 1, 'a proven newcomer is heard')
    assert.ok(heard() < sent, 'the per-peer limits refused the rest')
    assert.equal(historyKept(owner), MAX_CHAT_HISTORY)
    // On disk: a restart reads back the whole history, and the newcomers' messages apart from it.
    // (A message refused for the peer's rate may come again through the mesh and be taken later, up
    // to the stop: the restart must read back every one taken before it, and still none past the limits.)
    const provenIds = (): Set<string> => new Set(owner.space.chat(space).filter(c => c.text.startsWith('proven spam')).map(c => c.id))
    const kept = provenIds()
    await stopNode(owner)
    owner = await startAt(ownerDir)
    assert.equal(historyKept(owner), MAX_CHAT_HISTORY)
    const readBack = provenIds()
    assert.ok([...kept].every(id => readBack.has(id)), `every newcomer message taken before the restart is read back (${kept.size} before, ${readBack.size} after)`)
    assert.ok(readBack.size < sent, 'the per-peer limits refused the rest, on disk too')
    await connectAll()
  })

  it("beacons of a fresh identity: refused without its admission proof, and it is listed once it sends one", async () => {
    const since = (rejections.get(owner) ?? []).length
    const beacon = async (): Promise<Uint8Array> => (await createBeacon(mallory.identity.userKey, {
      space, peer: mallory.peerId, addrs: [], name: 'stranger', avatar: '', position: [8, 0, 8], rotation: [0, 0, 0, 1], ts: Date.now()
    })).bytes
    await mallory.publish(topic, dagCbor.encode({ t: 'beacon', d: await beacon() }))
    await eventually('the beacon without a proof is refused', () => gossipRejections(owner, mallory.peerId, since).some(r => r.error.startsWith('AdmissionRequiredError')))
    assert.ok(!owner.space.who(space).some(m => m.did === mallory.did))
    const w = await solveAdmission(space, mallory.did)
    await mallory.publish(topic, dagCbor.encode({ t: 'beacon', d: await beacon(), w }))
    await eventually('the stranger with a proof is listed', () => owner.space.who(space).some(m => m.did === mallory.did))
  })

  it('the long-standing author is still heard at once after the flood, and its new message costs the owner nothing (the owner, named by the policy, keeps a part of its own)', async () => {
    assert.equal(historyKept(owner), MAX_CHAT_HISTORY)
    await member.space.say(space, 'still here')
    await eventually('the owner hears the member', () => owner.space.chat(space).some(c => c.text === 'still here' && c.author === member.did))
    assert.equal(historyKept(owner), MAX_CHAT_HISTORY)
    assert.equal(owner.space.chat(space).filter(c => c.author === owner.did).length, MAX_CHAT_HISTORY * 4 / 5, "none of the owner's went")
    assert.equal(owner.space.chat(space).filter(c => c.author === member.did).length, MAX_CHAT_HISTORY / 5 + 1, "none of the member's went")
  })
})

describe('a lying peer answering a joiner\'s sync', { timeout: 300_000 }, () => {
  it(`its ${LIAR_STRANGERS} fresh identities without proofs come from at most a few answers of MAX_SYNC_NEW_AUTHORS (${MAX_SYNC_NEW_AUTHORS}) authors each, and cost the joiner nothing of the owner's history or of the proven newcomers it holds`, async () => {
    const rnd = seeded(1403)
    const owner = await startAt()
    const liar = await startAt()
    const liarDir = dirs[dirs.length - 1]
    const space = (await owner.space.create({ name: 'Synced', displayName: 'owner' })).id
    const topic = spaceTopic(space)
    await liar.connect(tcpAddr(owner), { signal: AbortSignal.timeout(STEP_MS) })
    await liar.space.join(space, { name: 'liar' })
    for (let i = 0; i < 30; i++) await owner.space.say(space, `owner ${i}`).catch(() => {})
    // A proven newcomer the owner holds, speaking several times.
    const newcomer = ed25519KeyFromSeed(rnd.bytes(32))
    const w = await solveAdmission(space, (await createChat(newcomer, space, 'x')).author)
    await eventually('the liar is in the mesh', () => liar.topicPeers(topic).includes(owner.peerId))
    for (let i = 0; i < 6; i++) await liar.publish(topic, dagCbor.encode({ t: 'chat', d: (await createChat(newcomer, space, `proven ${i}`)).bytes, w }))
    await eventually('the owner holds the proven newcomer', () => owner.space.chat(space).filter(c => c.text.startsWith('proven')).length === 6)
    // The liar's store: a newcomers' part of fresh identities it holds no proof of.
    await stopNode(liar)
    const store = await Store.open(liarDir)
    try {
      const spaces = new SpaceStore(store.sublevel('space'))
      const t0 = Date.now() - 60_000
      for (let i = 0; i < LIAR_STRANGERS; i++) {
        const c = await createChat(ed25519KeyFromSeed(rnd.bytes(32)), space, `lie ${i}`, t0 + i)
        await spaces.addChat(space, { area: 'new', ts: c.ts, id: c.id, bytes: c.bytes })
      }
    } finally {
      await store.close()
    }
    const liar2 = await startAt(liarDir)
    await liar2.connect(tcpAddr(owner), { signal: AbortSignal.timeout(STEP_MS) })
    assert.ok(liar2.space.chat(space).filter(c => c.text.startsWith('lie')).length > 3 * MAX_SYNC_NEW_AUTHORS, 'the liar answers with many')
    const joiner = await startAt()
    await joiner.connect(tcpAddr(owner), { signal: AbortSignal.timeout(STEP_MS) })
    await joiner.connect(tcpAddr(liar2), { signal: AbortSignal.timeout(STEP_MS) })
    await joiner.space.join(space, { name: 'joiner' })
    const ownerIds = owner.space.chat(space).map(c => c.id)
    await eventually('the joiner holds all the owner holds, and some of the lies', () => {
      const ids = new Set(joiner.space.chat(space).map(c => c.id))
      return ownerIds.every(id => ids.has(id)) && joiner.space.chat(space).some(c => c.text.startsWith('lie'))
    })
    const lies = joiner.space.chat(space).filter(c => c.text.startsWith('lie'))
    // Each answer brings at most MAX_SYNC_NEW_AUTHORS; the join's and a new subscriber's sync may both have run.
    assert.ok(lies.length <= 3 * MAX_SYNC_NEW_AUTHORS, `${lies.length} lies kept of ${LIAR_STRANGERS}`)
    assert.equal(joiner.space.chat(space).filter(c => c.text.startsWith('proven')).length, 6, 'the proven newcomer is whole')
    assert.equal(joiner.space.chat(space).filter(c => c.author === owner.did).length, owner.space.chat(space).filter(c => c.author === owner.did).length)
    for (const n of [joiner, liar2, owner]) await stopNode(n)
  })
})

describe("the sender applies the receivers' limits and says what it did not send", { timeout: 300_000 }, () => {
  let alice: PeerverseNode
  let bob: PeerverseNode
  let space = ''

  before(async () => {
    alice = await startAt()
    bob = await startAt()
    await alice.connect(tcpAddr(bob), { signal: AbortSignal.timeout(STEP_MS) })
    space = (await alice.space.create({ name: 'Chatty', displayName: 'alice' })).id
    await bob.space.join(space, { name: 'bob' })
    await eventually('the gossip mesh is up', () => alice.topicPeers(spaceTopic(space)).includes(bob.peerId) && bob.topicPeers(spaceTopic(space)).includes(alice.peerId))
  })

  it(`30 says in a row: past CHAT_BURST - CHAT_SEND_MARGIN (${CHAT_BURST - CHAT_SEND_MARGIN}) each is refused with SpaceRateLimitError; the other member gets every one said`, async () => {
    const said: string[] = []
    const refused: string[] = []
    for (let i = 0; i < 30; i++) {
      try {
        await bob.space.say(space, `line ${i}`)
        said.push(`line ${i}`)
      } catch (err) {
        assert.equal((err as Error).name, 'SpaceRateLimitError')
        assert.match((err as Error).message, /^not sent/)
        refused.push(`line ${i}`)
      }
    }
    assert.ok(said.length >= CHAT_BURST - CHAT_SEND_MARGIN && said.length < CHAT_BURST, `${said.length} said`)
    assert.equal(said.length + refused.length, 30)
    await eventually('alice has every line bob was told was sent', () => said.every(t => alice.space.chat(space).some(c => c.text === t)))
    const got = alice.space.chat(space).filter(c => c.author === bob.did).map(c => c.text)
    assert.deepEqual(got.sort(), said.sort(), 'and nothing bob was told was not sent')
    assert.ok(!(rejections.get(alice) ?? []).some(r => r.peerId === bob.peerId), 'alice refused nothing of bob')
  })

  it(`world edits as fast as they go: past WORLD_UPDATE_BURST - WORLD_SEND_MARGIN (${WORLD_UPDATE_BURST - WORLD_SEND_MARGIN}, then ${WORLD_UPDATES_PER_SECOND}/s) each is refused with SpaceRateLimitError; the other member gets every one placed`, async () => {
    const placed: string[] = []
    let refused = 0
    const start = Date.now()
    // Placing as fast as this peer can, until a few are refused (an honest client places far slower).
    for (let i = 0; refused < 3 && i < 5000; i++) {
      try {
        placed.push(await alice.space.place(space, { model: MODEL, position: [1 + (i % 200), 0, 1 + Math.floor(i / 200)], rotation: [0, 0, 0, 1], scale: [1, 1, 1], props: {} }))
      } catch (err) {
        assert.equal((err as Error).name, 'SpaceRateLimitError')
        assert.match((err as Error).message, /^not sent/)
        refused++
      }
    }
    const seconds = (Date.now() - start) / 1000
    assert.equal(refused, 3)
    assert.ok(placed.length >= WORLD_UPDATE_BURST - WORLD_SEND_MARGIN, `${placed.length} placed`)
    assert.ok(placed.length <= WORLD_UPDATE_BURST - WORLD_SEND_MARGIN + Math.ceil(WORLD_UPDATES_PER_SECOND * seconds), `${placed.length} placed in ${seconds} s`)
    await eventually('bob holds every object alice was told was placed', () => {
      const held = new Set(bob.space.objects(space).map(o => o.id))
      return placed.every(id => held.has(id))
    })
    assert.equal(bob.space.objects(space).length, placed.length)
    assert.ok(!(rejections.get(bob) ?? []).some(r => r.peerId === alice.peerId), 'bob refused nothing of alice')
  })
})
