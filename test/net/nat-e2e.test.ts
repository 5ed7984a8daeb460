/**
 * What a user does, end to end through real NAT routers (the network-namespace testbed): real
 * `peerverse start` processes, a bootstrap and a relay peer on the internet, A and B in two homes
 * behind cone NATs, C and D in two homes behind symmetric NATs (hole punching cannot pass two of
 * them). Each home peer knows only the bootstrap, finds it is behind NAT and reserves a relay
 * slot; B dials A and C dials D through the relay. Between A and B a 20 MiB file, a feed and a space's presence and chat flow
 * over whatever connection they end up with (whether it is direct is recorded; the direct
 * connection itself is asserted in nat-reach.test.ts). Between C and D chat, presence and feed
 * entries flow through the relay, and a file past RELAYED_CONTENT_MAX_BYTES says it waits for a
 * direct path and ends with DirectPathPendingError. Skips with the testbed's reason where
 * namespaces cannot be made.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdtemp, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Testbed, testbedUnavailable } from '../../testbed/testbed.ts'
import { startNsPeer, type NsPeer } from '../../testbed/peer.ts'
import { ApiClient } from '../../src/api/client.ts'
import { RELAYED_CONTENT_MAX_BYTES } from '../../src/content/index.ts'
import type { NodeStatus, PeerInfoView } from '../../src/node/node.ts'
import { CONFIG_FILE, type PartialConfig } from '../../src/node/config.ts'
import { runCli, waitFor } from '../helpers/cli-peer.ts'
import { seededBytes } from '../helpers/random.ts'

const MiB = 1024 * 1024
/** The file fetched between the two cone homes. */
export const E2E_FILE_BYTES = 20 * MiB
/** How long a home peer may take to find it is behind NAT and hold a relay slot. */
const REACHABLE_DEADLINE_MS = 60_000
/** How long the cone fetch may wait for a direct path (the upgrade runs meanwhile). */
const CONE_DIRECT_PATH_MS = 45_000
/** The short deadline the symmetric home's large fetch is given. */
const SYMMETRIC_DIRECT_PATH_MS = 3_000
/** How long a feed entry, a chat line or a position may take to arrive. */
const FLOW_DEADLINE_MS = 30_000
/** The home peers' holder lookups: a fetch that finds no one says so in seconds (a space join keeps its default: connections between homes may flap meanwhile). */
const HOME_CONFIG: PartialConfig = { content: { noHoldersTimeoutMs: 15_000 } }

const skip = await testbedUnavailable()

interface FetchLine { progress?: { bytes?: number, waitingForDirectPath?: number }, done?: boolean, error?: string, message?: string }

/** POST /api/v0/content/fetch; every NDJSON line it answers. */
async function fetchLines (p: NsPeer, body: Record<string, unknown>): Promise<FetchLine[]> {
  const res = await ApiClient.check(await p.api.raw('POST', '/api/v0/content/fetch', { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }))
  return (await res.text()).split('\n').filter(l => l !== '').map(l => JSON.parse(l) as FetchLine)
}

async function add (p: NsPeer, bytes: Uint8Array, name: string): Promise<string> {
  const res = await ApiClient.check(await p.api.raw('POST', `/api/v0/content/add?name=${name}`, { body: bytes as unknown as BodyInit, headers: { 'content-type': 'application/octet-stream' } }))
  return (await res.json() as { cid: string }).cid
}

async function cli (p: NsPeer, ...args: string[]): Promise<string> {
  const r = await runCli([...args, '--data', p.dataDir])
  assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`)
  return r.stdout
}

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

async function status (p: NsPeer): Promise<NodeStatus> {
  return await p.api.request<NodeStatus>('GET', '/api/v0/status')
}

async function connectionsTo (from: NsPeer, to: NsPeer): Promise<PeerInfoView['connections']> {
  const { peers } = await from.api.request<{ peers: PeerInfoView[] }>('GET', '/api/v0/peers')
  return peers.find(x => x.peerId === to.ready.peerId)?.connections ?? []
}

const describeConnections = (cs: Readonly<PeerInfoView['connections']>): string =>
  cs.length === 0 ? 'none' : cs.map(c => `${c.transport}${c.direct ? ' (direct)' : ''}`).join(', ')

/** Waits until `p` is behind NAT, holds a relay slot and names a relayed TCP address; that address. */
async function relayedAddress (p: NsPeer): Promise<string> {
  let last: NodeStatus | undefined
  return await waitFor(`${p.host.name} behind NAT with a relayed address`, async () => {
    const s = last = await status(p)
    if (s.reach.reachability !== 'behind-nat' || s.reach.relays.length === 0) return undefined
    return s.reach.relayedAddresses.find(x => x.includes('/p2p-circuit') && !x.includes('/webrtc'))
  }, REACHABLE_DEADLINE_MS, 100).catch(err => {
    throw new Error(`${(err as Error).message}; last reach ${JSON.stringify(last?.reach)}`)
  })
}

/** Runs `step`; when it fails, adds both peers' connections to each other and a's upgrade counts to the error. */
async function explained<T> (x: NsPeer, y: NsPeer, step: () => Promise<T>): Promise<T> {
  try {
    return await step()
  } catch (err) {
    const [xy, yx, sx, sy] = await Promise.all([connectionsTo(x, y), connectionsTo(y, x), status(x), status(y)]).catch(() => [[], [], undefined, undefined] as const)
    throw new Error(`${(err as Error).message}; ${x.host.name} -> ${y.host.name}: ${describeConnections(xy)}; ${y.host.name} -> ${x.host.name}: ${describeConnections(yx)}; upgrades ${JSON.stringify(sx?.reach.upgrades)} / ${JSON.stringify(sy?.reach.upgrades)}; relays ${JSON.stringify(sx?.reach.relays)} / ${JSON.stringify(sy?.reach.relays)}`)
  }
}

/** `space link` on the owner, `space join` on the other; chat both ways and the joiner's position on the owner. */
async function spaceBothWays (owner: NsPeer, joiner: NsPeer, name: string, spot: [number, number, number]): Promise<void> {
  const { id } = await owner.api.request<{ id: string }>('POST', '/api/v0/space/create', { name })
  await owner.api.request('POST', '/api/v0/space/say', { space: id, text: `hello from ${owner.host.name}` })
  const { code } = JSON.parse(await cli(owner, 'space', 'link', id, '--json')) as { code: string }
  await cli(joiner, 'space', 'join', code)
  await waitFor(`${owner.host.name}'s chat on ${joiner.host.name}`, async () => {
    const { chat } = await joiner.api.request<{ chat: Array<{ text: string }> }>('GET', `/api/v0/space/${id}/chat`)
    return chat.some(c => c.text === `hello from ${owner.host.name}`)
  }, FLOW_DEADLINE_MS)
  await joiner.api.request('POST', '/api/v0/space/say', { space: id, text: `hello from ${joiner.host.name}` })
  await waitFor(`${joiner.host.name}'s chat on ${owner.host.name}`, async () => {
    const { chat } = await owner.api.request<{ chat: Array<{ text: string }> }>('GET', `/api/v0/space/${id}/chat`)
    return chat.some(c => c.text === `hello from ${joiner.host.name}`)
  }, FLOW_DEADLINE_MS)
  await waitFor(`${joiner.host.name}'s position on ${owner.host.name}`, async () => {
    await joiner.api.request('POST', '/api/v0/space/move', { space: id, position: spot, rotation: [0, 0, 0, 1] })
    const { members } = await owner.api.request<{ members: Array<{ did: string, position: number[] }> }>('GET', `/api/v0/space/${id}/who`)
    const m = members.find(x => x.did === joiner.ready.did)
    return m != null && Math.abs(m.position[0] - spot[0]) < 1e-3 && Math.abs(m.position[2] - spot[2]) < 1e-3
  }, FLOW_DEADLINE_MS, 200)
  // And the owner's presence on the joiner.
  await waitFor(`${owner.host.name}'s position on ${joiner.host.name}`, async () => {
    await owner.api.request('POST', '/api/v0/space/move', { space: id, position: [spot[0] + 1, 0, spot[2]], rotation: [0, 0, 0, 1] })
    const { members } = await joiner.api.request<{ members: Array<{ did: string, position: number[] }> }>('GET', `/api/v0/space/${id}/who`)
    const m = members.find(x => x.did === owner.ready.did)
    return m != null && Math.abs(m.position[0] - spot[0] - 1) < 1e-3
  }, FLOW_DEADLINE_MS, 200)
}

/** `follower` follows `author`, who posts `text`; waits for it in the follower's feed. */
async function feedFlows (author: NsPeer, follower: NsPeer, text: string): Promise<void> {
  await cli(follower, 'follow', author.ready.did)
  await cli(author, 'post', text)
  await waitFor(`${author.host.name}'s post on ${follower.host.name}`, async () => {
    const { entries } = await follower.api.request<{ entries: Array<{ text?: string }> }>('GET', '/api/v0/social/feed?limit=20')
    return entries.some(e => e.text === text)
  }, FLOW_DEADLINE_MS, 200)
}

describe('through real NATs, end to end', { skip, timeout: 240_000 }, () => {
  let tb: Testbed | undefined
  const started: NsPeer[] = []
  let a: NsPeer
  let b: NsPeer
  let c: NsPeer
  let d: NsPeer

  before(async () => {
    tb = await Testbed.create({
      publicHosts: 2,
      homes: [
        { name: 'a', nat: 'cone', hosts: 1 }, { name: 'b', nat: 'cone', hosts: 1 },
        { name: 'c', nat: 'symmetric', hosts: 1 }, { name: 'd', nat: 'symmetric', hosts: 1 }
      ]
    })
    const boot = await startNsPeer(tb.internet[0], ['--public', '--dht-mode', 'server', '--devnet'])
    started.push(boot)
    const relay = await startNsPeer(tb.internet[1], ['--public', '--dht-mode', 'server', '--devnet', '--bootstrap', boot.addr])
    started.push(relay)
    // Each home peer runs a devnet of its own: feeds, spaces and content do not need one chain.
    const homes = await Promise.all(tb.homes.map(async h => {
      const dataDir = await mkdtemp(join(h.hosts[0].dir, `${h.name}-`))
      await writeFile(join(dataDir, CONFIG_FILE), JSON.stringify(HOME_CONFIG))
      const p = await startNsPeer(h.hosts[0], ['--listen', '/webrtc', '--devnet', '--bootstrap', boot.addr], { dataDir })
      started.push(p)
      return p
    }))
    ;[a, b, c, d] = homes
    const [relayedA, , , relayedD] = await Promise.all(homes.map(relayedAddress))
    for (const [from, to, address] of [[b, a, relayedA], [c, d, relayedD]] as const) {
      const { peerId } = await from.api.request<{ peerId: string }>('POST', '/api/v0/connect', { address })
      assert.equal(peerId, to.ready.peerId)
    }
  })

  after(async () => {
    for (const p of started.reverse()) await p.kill().catch(() => {})
    await tb?.destroy()
  })

  it('two cone homes: a feed entry, and a space\'s presence and chat both ways, over whatever connection they hold', async t => {
    await explained(a, b, async () => { await feedFlows(a, b, 'posted from a cone home') })
    await explained(a, b, async () => { await spaceBothWays(a, b, 'Porch', [131, 0, 127]) })
    const cs = await connectionsTo(b, a)
    assert.ok(cs.length > 0, 'b is connected to a')
    t.diagnostic(`cone + cone: b's connections to a: ${describeConnections(cs)}; direct: ${cs.some(x => x.direct) ? 'yes' : 'no'}`)
  })

  it('two cone homes: a 20 MiB file added on a is fetched by b, and the bytes match', async t => {
    const bytes = seededBytes(E2E_FILE_BYTES, 161)
    const cid = await add(a, bytes, 'world.glb')
    const lines = await fetchLines(b, { cid, directPathTimeoutMs: CONE_DIRECT_PATH_MS })
    const waited = lines.some(l => (l.progress?.waitingForDirectPath ?? 0) > 0)
    const cs = await connectionsTo(b, a)
    t.diagnostic(`cone + cone: the fetch ${waited ? 'waited' : 'did not wait'} for a direct path; b's connections to a after it: ${describeConnections(cs)}`)
    assert.equal(lines.at(-1)?.error, undefined, JSON.stringify(lines.at(-1)))
    assert.equal(lines.at(-1)?.done, true)
    const got = new Uint8Array(await (await ApiClient.check(await b.api.raw('GET', `/content/${cid}`))).arrayBuffer())
    assert.equal(got.length, E2E_FILE_BYTES)
    assert.equal(sha256(got), sha256(bytes), 'the bytes match')
  })

  it('two symmetric homes: feed entries, presence and chat flow through the relay', async t => {
    await explained(d, c, async () => { await feedFlows(d, c, 'posted from a symmetric home') })
    await explained(d, c, async () => { await spaceBothWays(d, c, 'Yard', [40, 0, 60]) })
    const cs = await connectionsTo(c, d)
    assert.ok(cs.length > 0 && cs.every(x => x.transport === 'relay' && !x.direct), `only relayed connections: ${describeConnections(cs)}`)
    t.diagnostic(`symmetric + symmetric: c's connections to d: ${describeConnections(cs)}`)
  })

  it('two symmetric homes: a file past RELAYED_CONTENT_MAX_BYTES says it waits for a direct path, then ends with DirectPathPendingError', async () => {
    const bytes = seededBytes(RELAYED_CONTENT_MAX_BYTES + 1, 162)
    const cid = await add(d, bytes, 'past-relay.glb')
    const lines = await fetchLines(c, { cid, directPathTimeoutMs: SYMMETRIC_DIRECT_PATH_MS })
    await explained(d, c, async () => { assert.ok(lines.some(l => l.progress?.waitingForDirectPath === 1), `progress says it waits: ${JSON.stringify(lines)}`) })
    const last = lines.at(-1)
    assert.equal(last?.error, 'DirectPathPendingError', JSON.stringify(last))
    assert.match(last?.message ?? '', new RegExp(d.ready.peerId))
    // The command line says the same.
    const got = await runCli(['get', cid, '--direct-timeout', String(SYMMETRIC_DIRECT_PATH_MS), '-o', join(c.dataDir, 'out.glb'), '--data', c.dataDir])
    assert.notEqual(got.code, 0)
    assert.match(got.stderr, /waiting for a direct path to 1 holder reachable only through a relay/)
    assert.match(got.stderr, /DirectPathPendingError/)
    assert.doesNotMatch(got.stderr, /NoProvidersError/)
  })
})
