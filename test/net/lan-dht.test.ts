/**
 * Default peers find each other: five `peerverse start` processes on 127.0.0.1 with default DHT
 * settings (no `--dht-mode`), each told only the previous one. The WAN DHT stays a client on
 * loopback (nobody is publicly reachable), and the LAN DHT, always a server, makes them one DHT:
 * every peer finds every other, the last fetches a file held only by the first and joins a space
 * created only on the first, and status shows the LAN DHT serving with a routing table.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { PeerSet, runCli, waitFor, type CliPeer } from '../helpers/cli-peer.ts'
import { seeded } from '../helpers/random.ts'

const set = new PeerSet()
const PEERS = 5

interface DhtView { mode: 'server' | 'client', peers: number }
interface StatusView { dht: { wan: DhtView, lan: DhtView }, mdns: boolean }

async function cli (p: CliPeer, ...args: string[]): Promise<string> {
  const r = await runCli([...args, '--data', p.dataDir])
  assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`)
  return r.stdout
}

async function status (p: CliPeer): Promise<StatusView> {
  return await p.api.request<StatusView>('GET', '/api/v0/status')
}

/** Polls find-peer through the API until it names `target` with an address. */
async function findable (from: CliPeer, target: CliPeer): Promise<string[]> {
  return await waitFor(`peer ${PEERS} finds ${target.ready.peerId} through the DHT`, async () => {
    const r = await from.api.request<{ addresses: string[] }>('GET', `/api/v0/dht/peer/${target.ready.peerId}`)
    return r.addresses.length > 0 ? r.addresses : undefined
  }, 90_000, 500)
}

describe('five default peers in a chain form one DHT', { timeout: 600_000 }, () => {
  const peers: CliPeer[] = []

  before(async () => {
    for (let i = 0; i < PEERS; i++) {
      peers.push(await set.start({ dhtMode: 'default', bootstrap: i === 0 ? [] : [peers[i - 1].addr] }))
    }
  })

  after(async () => { await set.cleanup() })

  it('status shows the LAN DHT serving with peers in its routing table, the WAN DHT a client, mDNS off', async () => {
    for (const p of peers) {
      const s = await waitFor('a LAN routing table with peers', async () => {
        const st = await status(p)
        return st.dht.lan.peers > 0 ? st : undefined
      }, 60_000)
      assert.equal(s.dht.lan.mode, 'server')
      assert.equal(s.dht.wan.mode, 'client', 'on loopback nobody is publicly reachable: the WAN DHT stays a client in auto mode')
      assert.equal(s.mdns, false)
    }
    const text = await cli(peers[0], 'status')
    assert.match(text, /dht: +wan client \(\d+ in routing table\), lan server \([1-9]\d* in routing table\)/)
    assert.match(text, /mdns: +off/)
  })

  it('the last finds the first and the first the last with find-peer', async () => {
    const first = peers[0]
    const last = peers[PEERS - 1]
    for (const [from, to] of [[last, first], [first, last]]) {
      await findable(from, to)
      const out = JSON.parse(await cli(from, 'find-peer', to.ready.peerId, '--json')) as { addresses: string[] }
      const port = to.addr.split('/')[4]
      assert.ok(out.addresses.some(a => a.includes(`/tcp/${port}`)), `find-peer names ${to.addr}: ${out.addresses.join(' ')}`)
    }
  })

  it('every peer finds every other', async () => {
    for (const from of peers) {
      for (const to of peers) {
        if (from !== to) await findable(from, to)
      }
    }
  })

  it('the last fetches a file added only on the first', async () => {
    const dir = await set.tempDir()
    const bytes = seeded(15).bytes(300_000)
    const src = join(dir, 'held-by-the-first.bin')
    await writeFile(src, bytes)
    const { cid } = JSON.parse(await cli(peers[0], 'add', src, '--json')) as { cid: string }
    const out = join(dir, 'fetched.bin')
    await cli(peers[PEERS - 1], 'get', cid, '-o', out, '--json')
    assert.deepEqual(new Uint8Array(await readFile(out)), bytes)
  })

  it('the last joins a space created only on the first', async () => {
    const created = JSON.parse(await cli(peers[0], 'space', 'create', 'Chain', 'end', '--name', 'first', '--json')) as { id: string, owner: string }
    const joined = JSON.parse(await cli(peers[PEERS - 1], 'space', 'join', created.id, '--name', 'last', '--json')) as { id: string, owner: string }
    assert.equal(joined.id, created.id)
    assert.equal(joined.owner, peers[0].ready.did)
  })
})
