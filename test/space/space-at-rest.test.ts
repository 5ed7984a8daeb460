/**
 * A private space's chat and world records at rest: stored sealed under the space's group key, so
 * after its members chat and place an object, no file of either member's store (LevelDB's .log
 * and .ldb files included, read after the store is closed) holds the plaintext; a public space's
 * chat, stored in the clear as before, is found by the same search (so the search can fail).
 * After a restart both are read back (opened with the key) as they were.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createNode, type PeerverseNode } from '../../src/node/node.ts'
import { defaultConfig, mergeConfig } from '../../src/node/config.ts'
import { spaceTopic } from '../../src/space/index.ts'
import { STORE_DIR } from '../../src/store/store.ts'
import { seeded } from '../helpers/random.ts'
import { waiter } from '../helpers/local-peers.ts'

const STEP_MS = 30_000
const MODEL = 'bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy'
const eventually = waiter({ timeoutMs: STEP_MS, intervalMs: 25 })

const dirs: string[] = []
const running = new Set<PeerverseNode>()

async function startAt (dir?: string): Promise<{ node: PeerverseNode, dir: string }> {
  const d = dir ?? await mkdtemp(join(tmpdir(), 'peerverse-space-at-rest-'))
  if (dir == null) dirs.push(d)
  const node = await createNode(mergeConfig(defaultConfig(d), { discovery: { mdns: false }, listen: ['/ip4/127.0.0.1/tcp/0'], api: false, dht: { mode: 'server' }, relay: { server: false } }))
  await node.start()
  running.add(node)
  return { node, dir: d }
}

async function stopNode (node: PeerverseNode): Promise<void> {
  running.delete(node)
  await node.stop()
}

const tcpAddr = (n: PeerverseNode): string => n.addresses().find(a => a.includes('/tcp/')) as string

/** The files under `dir`, recursively, that contain `needle` (each file read whole). */
async function filesHolding (dir: string, needle: string): Promise<string[]> {
  const bytes = Buffer.from(needle, 'utf8')
  const out: string[] = []
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!e.isFile()) continue
    const path = join(e.parentPath, e.name)
    if ((await readFile(path)).includes(bytes)) out.push(path)
  }
  return out
}

after(async () => {
  for (const n of running) await n.stop().catch(() => {})
  for (const d of dirs) await rm(d, { recursive: true, force: true })
})

describe("a private space's chat and world at rest", { timeout: 300_000 }, () => {
  const rnd = seeded(1405)
  const canary = (what: string): string => `${what}-${Buffer.from(rnd.bytes(12)).toString('hex')}`
  const secretOwner = canary('owner-secret')
  const secretMember = canary('member-secret')
  const secretProp = canary('object-secret')
  const publicText = canary('public-words')
  let owner: PeerverseNode
  let member: PeerverseNode
  let ownerDir = ''
  let memberDir = ''
  let priv = ''
  let pub = ''
  let objectId = ''

  before(async () => {
    ;({ node: owner, dir: ownerDir } = await startAt())
    ;({ node: member, dir: memberDir } = await startAt())
    await owner.connect(tcpAddr(member), { signal: AbortSignal.timeout(STEP_MS) })
    priv = (await owner.space.create({ name: 'Back room', private: true, displayName: 'owner' })).id
    await owner.space.setPolicy(priv, { addMembers: [member.did] })
    await member.space.join(priv, { name: 'member' })
    pub = (await owner.space.create({ name: 'Front porch', displayName: 'owner' })).id
    await member.space.join(pub, { name: 'member' })
    for (const id of [priv, pub]) {
      await eventually('the gossip mesh is up', () => owner.topicPeers(spaceTopic(id)).includes(member.peerId) && member.topicPeers(spaceTopic(id)).includes(owner.peerId))
    }
  })

  it('members chat and place an object in the private space; both hold it all', async () => {
    await owner.space.say(priv, secretOwner)
    await member.space.say(priv, secretMember)
    objectId = await owner.space.place(priv, { model: MODEL, position: [4, 0, 4], rotation: [0, 0, 0, 1], scale: [1, 1, 1], props: { label: secretProp } })
    await owner.space.say(pub, publicText)
    for (const n of [owner, member]) {
      await eventually('both messages are held', () => [secretOwner, secretMember].every(t => n.space.chat(priv).some(c => c.text === t)))
      await eventually('the object is held', () => n.space.objects(priv).some(o => o.id === objectId))
      await eventually('the public words are held', () => n.space.chat(pub).some(c => c.text === publicText))
    }
  })

  it('after the stores close, no file of either store holds the private plaintext; the public words are found', async () => {
    await stopNode(owner)
    await stopNode(member)
    for (const dir of [ownerDir, memberDir]) {
      const store = join(dir, STORE_DIR)
      const names = (await readdir(store)).join(' ')
      assert.match(names, /\.log/, `LevelDB's log is there to search (${names})`)
      for (const secret of [secretOwner, secretMember, secretProp]) {
        assert.deepEqual(await filesHolding(store, secret), [], `${secret} lies in the clear`)
      }
      assert.notDeepEqual(await filesHolding(store, publicText), [], 'the public words are stored in the clear, and found')
    }
  })

  it('after a restart the private chat and object are read back with the key', async () => {
    ;({ node: owner } = await startAt(ownerDir))
    ;({ node: member } = await startAt(memberDir))
    for (const n of [owner, member]) {
      const texts = n.space.chat(priv).map(c => c.text)
      assert.ok(texts.includes(secretOwner) && texts.includes(secretMember), `read back: ${JSON.stringify(texts)}`)
      assert.equal(n.space.objects(priv).find(o => o.id === objectId)?.props.label, secretProp)
      assert.ok(n.space.chat(pub).some(c => c.text === publicText))
    }
  })
})
