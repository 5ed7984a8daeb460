/**
 * Everything a user does works over a relayed connection (circuit relay v2, which libp2p marks
 * limited), between real `peerverse` processes on loopback: a relay R, and two peers A and B that
 * listen on nothing but relay slots, so the only path between them is through R. Files up to
 * RELAYED_CONTENT_MAX_BYTES come through the relay; a larger one says it waits for a direct path
 * and fails with DirectPathPendingError at its deadline. Feeds, a space's presence and chat, and
 * the ledger (block sync from a validator behind the relay, and a payment to it) flow too.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { createServer, type AddressInfo } from 'node:net'
import { RELAYED_CONTENT_MAX_BYTES } from '../../src/content/index.ts'
import { ApiClient } from '../../src/api/client.ts'
import { PeerSet, runCli, waitFor, type CliPeer } from '../helpers/cli-peer.ts'
import { seededBytes } from '../helpers/random.ts'

const set = new PeerSet()

/** Start arguments every relayed-only peer gets (a flag that keeps peers from upgrading to a direct path goes here). */
const RELAYED_ONLY_ARGS: string[] = ['--no-webrtc']

/** A's and B's start options: no listen address but a slot on `relay`. */
function relayedOnly (relay: CliPeer, extra: string[] = []): Parameters<PeerSet['start']>[0] {
  return { listen: ['/p2p-circuit'], bootstrap: [relay.addr], extra: [...RELAYED_ONLY_ARGS, ...extra] }
}

async function cli (p: CliPeer, ...args: string[]): Promise<string> {
  const r = await runCli([...args, '--data', p.dataDir])
  assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`)
  return r.stdout
}

async function add (p: CliPeer, bytes: Uint8Array, name: string): Promise<string> {
  const res = await ApiClient.check(await p.api.raw('POST', `/api/v0/content/add?name=${name}`, { body: bytes as unknown as BodyInit, headers: { 'content-type': 'application/octet-stream' } }))
  return (await res.json() as { cid: string }).cid
}

interface FetchLine { progress?: { waitingForDirectPath?: number }, done?: boolean, error?: string, message?: string }

/** POST /api/v0/content/fetch; every NDJSON line it answers. */
async function fetchLines (p: CliPeer, body: Record<string, unknown>): Promise<FetchLine[]> {
  const res = await ApiClient.check(await p.api.raw('POST', '/api/v0/content/fetch', { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }))
  return (await res.text()).split('\n').filter(l => l !== '').map(l => JSON.parse(l) as FetchLine)
}

/**
 * POST /api/v0/content/fetch, calling `onLine` on each NDJSON line as it arrives; the last line.
 */
async function fetchStreaming (p: CliPeer, body: Record<string, unknown>, onLine: (line: FetchLine) => Promise<void>): Promise<FetchLine | undefined> {
  const res = await ApiClient.check(await p.api.raw('POST', '/api/v0/content/fetch', { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }))
  let buffer = ''
  let last: FetchLine | undefined
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buffer += Buffer.from(chunk).toString('utf8')
    let nl: number
    while ((nl = buffer.indexOf('\n')) >= 0) {
      last = JSON.parse(buffer.slice(0, nl)) as FetchLine
      buffer = buffer.slice(nl + 1)
      await onLine(last)
    }
  }
  return last
}

/** A TCP port free on 127.0.0.1 a moment ago. */
async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>(resolve => { server.listen(0, '127.0.0.1', resolve) })
  const { port } = server.address() as AddressInfo
  await new Promise(resolve => server.close(resolve))
  return port
}

/** Every connection `from` has to `to` goes through a relay. */
async function onlyRelayed (from: CliPeer, to: CliPeer): Promise<string[]> {
  const { peers } = await from.api.request<{ peers: Array<{ peerId: string, addresses: string[] }> }>('GET', '/api/v0/peers')
  const addresses = peers.find(p => p.peerId === to.ready.peerId)?.addresses ?? []
  assert.ok(addresses.length > 0, `${from.ready.peerId} is connected to ${to.ready.peerId}`)
  assert.ok(addresses.every(a => a.includes('/p2p-circuit')), `only relayed connections: ${addresses.join(', ')}`)
  return addresses
}

describe('over a relayed connection', { timeout: 300_000 }, () => {
  let r: CliPeer
  let a: CliPeer
  let b: CliPeer

  before(async () => {
    r = await set.start({ devnet: false })
    // A is the devnet's validator; B follows A's chain.
    a = await set.start(relayedOnly(r))
    const relayedA = await waitFor('a relay slot for A', async () => {
      const { addresses } = await a.api.request<{ addresses: string[] }>('GET', '/api/v0/status')
      return addresses.find(x => x.includes(`/p2p/${r.ready.peerId}/p2p-circuit/p2p/${a.ready.peerId}`))
    })
    b = await set.start(relayedOnly(r, ['--genesis', join(a.dataDir, 'genesis.json')]))
    assert.ok(!b.ready.addresses.some(x => x.includes('/tcp/') && !x.includes('p2p-circuit')), 'B has no direct address')
    const { peerId } = await b.api.request<{ peerId: string }>('POST', '/api/v0/connect', { address: relayedA })
    assert.equal(peerId, a.ready.peerId)
    await onlyRelayed(b, a)
  })

  after(async () => { await set.cleanup() })

  it('fetches a small file from a peer reachable only through a relay', async () => {
    const bytes = seededBytes(300_000, 71)
    const cid = await add(a, bytes, 'avatar.vrm')
    const lines = await fetchLines(b, { cid })
    assert.equal(lines.at(-1)?.error, undefined, JSON.stringify(lines.at(-1)))
    assert.equal(lines.at(-1)?.done, true)
    const got = new Uint8Array(await (await ApiClient.check(await b.api.raw('GET', `/content/${cid}`))).arrayBuffer())
    assert.ok(Buffer.from(got).equals(Buffer.from(bytes)), 'the bytes match')
    await onlyRelayed(b, a)
  })

  it('fetches a file of exactly RELAYED_CONTENT_MAX_BYTES through the relay', async () => {
    const bytes = seededBytes(RELAYED_CONTENT_MAX_BYTES, 72)
    const cid = await add(a, bytes, 'at-bound.glb')
    const lines = await fetchLines(b, { cid, directPathTimeoutMs: 3_000 })
    assert.equal(lines.at(-1)?.error, undefined, JSON.stringify(lines.at(-1)))
    assert.equal(lines.at(-1)?.done, true)
    const stat = await b.api.request<{ localBlocks: number, blocks: number, size: number }>('GET', `/api/v0/content/stat/${cid}`)
    assert.equal(stat.size, RELAYED_CONTENT_MAX_BYTES)
    assert.equal(stat.localBlocks, stat.blocks)
    await onlyRelayed(b, a)
  })

  it('a file one byte past the bound waits for a direct path, then fails with DirectPathPendingError', async () => {
    const bytes = seededBytes(RELAYED_CONTENT_MAX_BYTES + 1, 73)
    const cid = await add(a, bytes, 'past-bound.glb')
    const lines = await fetchLines(b, { cid, directPathTimeoutMs: 2_000 })
    assert.ok(lines.some(l => l.progress?.waitingForDirectPath === 1), `progress says it waits: ${JSON.stringify(lines)}`)
    const last = lines.at(-1)
    assert.equal(last?.error, 'DirectPathPendingError', JSON.stringify(last))
    assert.match(last?.message ?? '', new RegExp(a.ready.peerId))
    assert.match(last?.message ?? '', /reachable only through relays/)
    const stat = await b.api.request<{ localBlocks: number, blocks: number, pinned: boolean }>('GET', `/api/v0/content/stat/${cid}`)
    assert.ok(stat.localBlocks < stat.blocks, `nothing kept as complete: ${stat.localBlocks} of ${stat.blocks}`)
    assert.equal(stat.pinned, false)

    // The command line says the same.
    const got = await runCli(['get', cid, '--direct-timeout', '2000', '-o', join(b.dataDir, 'out.glb'), '--data', b.dataDir])
    assert.notEqual(got.code, 0)
    assert.match(got.stderr, /waiting for a direct path to 1 holder reachable only through a relay/)
    assert.match(got.stderr, /DirectPathPendingError/)
    await onlyRelayed(b, a)
  })

  it('a fetch waiting for a direct path goes on over a direct connection as soon as there is one', async () => {
    // D listens on a TCP port it does not announce: it names only its relay slot, so B first
    // reaches it through the relay, and directly once the test hands B the port.
    const port = await freePort()
    const d = await set.start({
      listen: [`/ip4/127.0.0.1/tcp/${port}`, '/p2p-circuit'],
      bootstrap: [r.addr],
      devnet: false,
      extra: [...RELAYED_ONLY_ARGS, '--announce', `${r.addr}/p2p-circuit`]
    })
    const bytes = seededBytes(RELAYED_CONTENT_MAX_BYTES + 1, 74)
    const cid = await add(d, bytes, 'model.glb')
    await waitFor('B reaches D through its relay slot', async () => {
      await b.api.request('POST', '/api/v0/connect', { address: `${r.addr}/p2p-circuit/p2p/${d.ready.peerId}` })
      return true
    })
    await onlyRelayed(b, d)
    let connected = false
    const last = await fetchStreaming(b, { cid, directPathTimeoutMs: 120_000 }, async line => {
      if ((line.progress?.waitingForDirectPath ?? 0) > 0 && !connected) {
        connected = true
        await waitFor('a direct connection from B to D', async () => {
          await b.api.request('POST', '/api/v0/connect', { address: `/ip4/127.0.0.1/tcp/${port}/p2p/${d.ready.peerId}` })
          return true
        })
      }
    })
    assert.ok(connected, 'the fetch waited for a direct path first')
    assert.equal(last?.error, undefined, JSON.stringify(last))
    assert.equal(last?.done, true)
    const got = new Uint8Array(await (await ApiClient.check(await b.api.raw('GET', `/content/${cid}`))).arrayBuffer())
    assert.ok(Buffer.from(got).equals(Buffer.from(bytes)), 'the bytes match')
    const { peers } = await b.api.request<{ peers: Array<{ peerId: string, addresses: string[] }> }>('GET', '/api/v0/peers')
    assert.ok(peers.find(p => p.peerId === d.ready.peerId)?.addresses.some(x => !x.includes('/p2p-circuit')), 'B holds a direct connection to D')
  })

  it('a feed entry posted by A reaches B', async () => {
    await cli(b, 'follow', a.ready.did)
    const text = 'posted behind a relay'
    await cli(a, 'post', text)
    await waitFor('the post on B', async () => {
      const { entries } = await b.api.request<{ entries: Array<{ text?: string }> }>('GET', '/api/v0/social/feed?limit=20')
      return entries.some(e => e.text === text)
    }, 60_000)
  })

  it("a space's presence and chat flow both ways", async () => {
    const { id } = await a.api.request<{ id: string }>('POST', '/api/v0/space/create', { name: 'Porch' })
    await a.api.request('POST', '/api/v0/space/say', { space: id, text: 'hello from A' })
    const { code } = JSON.parse(await cli(a, 'space', 'link', id, '--json')) as { code: string }
    await cli(b, 'space', 'join', code)
    await waitFor("A's chat on B", async () => {
      const { chat } = await b.api.request<{ chat: Array<{ text: string }> }>('GET', `/api/v0/space/${id}/chat`)
      return chat.some(c => c.text === 'hello from A')
    })
    await b.api.request('POST', '/api/v0/space/say', { space: id, text: 'hello from B' })
    await waitFor("B's chat on A", async () => {
      const { chat } = await a.api.request<{ chat: Array<{ text: string }> }>('GET', `/api/v0/space/${id}/chat`)
      return chat.some(c => c.text === 'hello from B')
    })
    const spot: [number, number, number] = [131, 0, 127]
    await b.api.request('POST', '/api/v0/space/move', { space: id, position: spot, rotation: [0, 0, 0, 1] })
    await waitFor("B's position on A", async () => {
      const { members } = await a.api.request<{ members: Array<{ did: string, position: number[] }> }>('GET', `/api/v0/space/${id}/who`)
      const m = members.find(x => x.did === b.ready.did)
      return m != null && Math.abs(m.position[0] - spot[0]) < 1e-3 && Math.abs(m.position[2] - spot[2]) < 1e-3
    }, 30_000, 100)
    await onlyRelayed(b, a)
  })

  it('a follower syncs blocks from a validator behind the relay, and its payment commits', async () => {
    const pay = JSON.parse(await cli(a, 'pay', b.ready.did, '1234', '--json')) as { status: string, height: number }
    assert.equal(pay.status, 'committed')
    // B holds every block up to the payment's (those before it only by block sync).
    await waitFor('B synced past the payment', async () => {
      const { balance } = await b.api.request<{ balance: string }>('GET', `/api/v0/ledger/balance/${encodeURIComponent(b.ready.did)}`)
      return BigInt(balance) === 1234n
    }, 60_000)
    const back = await runCli(['pay', a.ready.did, '1000', '--data', b.dataDir, '--json'])
    assert.equal(back.code, 0, back.stderr)
    assert.equal((JSON.parse(back.stdout) as { status: string }).status, 'committed')
    await onlyRelayed(b, a)
  })
})
