/**
 * Content links that carry a way in: a link holding a peer's address lets a peer that knows no one
 * (no bootstrap at all) fetch that peer's file (`peerverse get LINK`) and directory (the browser
 * client's URL through POST /api/v0/content/fetch {link}), every block verified as always. Bad
 * links get named errors: malformed (InvalidLinkError), the wrong kind (WrongLinkKindError), and
 * peers that cannot be reached (NoProvidersError naming the link's peers).
 */
import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { ApiClient } from '../../src/api/client.ts'
import { readApiInfo } from '../../src/api/server.ts'
import { linkPeerId, parseLink } from '../../src/net/links.ts'
import { CID } from 'multiformats/cid'
import { MAX_HINTED_HOLDERS, NO_HOLDERS_TIMEOUT_MS } from '../../src/content/swarm.ts'
import { MIN_LOOKUP_TIMEOUT_MS } from '../../src/node/config.ts'
import { SWARM_PROTOCOL } from '../../src/content/swarm-wire.ts'
import { Download } from '../../src/content/swarm-download.ts'
import type { DownloadHost } from '../../src/content/swarm-session.ts'
import { PeerSet, runCli, type CliPeer } from '../helpers/cli-peer.ts'
import { seededBytes } from '../helpers/random.ts'
import { closedPort, refusal } from '../helpers/refusals.ts'

/** Any CID (a raw block's). */
const HELLO_CID = 'bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e'

const set = new PeerSet()
after(async () => { await set.cleanup() })

async function peersOf (p: CliPeer): Promise<unknown[]> {
  return (await p.api.request<{ peers: unknown[] }>('GET', '/api/v0/peers')).peers
}

/** The lines of POST /api/v0/content/fetch with `body`; the last is `done` or `error`. */
async function fetchLines (p: CliPeer, body: unknown): Promise<Array<Record<string, unknown>>> {
  const res = await ApiClient.check(await p.api.raw('POST', '/api/v0/content/fetch', { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }))
  return (await res.text()).split('\n').filter(l => l !== '').map(l => JSON.parse(l) as Record<string, unknown>)
}

describe('content links', { timeout: 300_000 }, () => {
  it(`make at most MAX_HINTED_HOLDERS (${MAX_HINTED_HOLDERS}) of a download's candidate holders, dialled at the link's addresses`, () => {
    const dialled: Array<{ peer: string, protocol: string, addresses?: string[] }> = []
    const host = {
      blockstore: { has: () => false },
      protocols: {
        dial: async (peer: string, protocol: string, options: { addresses?: string[] } = {}) => {
          dialled.push({ peer, protocol, addresses: options.addresses })
          throw new Error('unreachable')
        }
      },
      stats: { blocksServed: 0, bytesServed: 0, blocksFetched: 0, bytesFetched: 0, bytesWasted: 0 },
      isBanned: () => false,
      penalize: () => {},
      candidatePeers: () => [],
      findProviders: async () => [],
      leafEvent: async () => {},
      wake: () => {},
      stored: () => {}
    } as unknown as DownloadHost
    const d = new Download(host, CID.parse(HELLO_CID), [])
    try {
      // Three links' worth of holders (each peer at its own address): only the first MAX_HINTED_HOLDERS are kept.
      const holders = Array.from({ length: MAX_HINTED_HOLDERS * 3 }, (_, i) => ({ peer: `peer${i}`, addresses: [`/ip4/127.0.0.1/tcp/${4000 + i}/p2p/peer${i}`] }))
      for (let i = 0; i < 3; i++) d.addHolders(holders.slice(i * MAX_HINTED_HOLDERS, (i + 1) * MAX_HINTED_HOLDERS))
      assert.deepEqual(dialled.map(x => x.peer), holders.slice(0, MAX_HINTED_HOLDERS).map(h => h.peer))
      assert.ok(dialled.every((x, i) => x.protocol === SWARM_PROTOCOL && x.addresses?.[0] === holders[i].addresses[0]))
    } finally {
      d.close()
    }
  })

  it('let a peer that knows no one fetch a file (get LINK) and a directory (API, browser link)', async () => {
    // Three peers with no bootstrap (and no mDNS): B and C know no one until they open A's links.
    const [a, b, c] = await Promise.all([set.start(), set.start(), set.start()])
    const dir = await set.tempDir()
    // Three leaves (1 MiB each at most), so the file is a tree, not one block.
    const bytes = seededBytes(2 * 1024 * 1024 + 12_345, 161)
    await writeFile(join(dir, 'song.bin'), bytes)
    const added = await runCli(['add', join(dir, 'song.bin'), '--json', '--data', a.dataDir])
    assert.equal(added.code, 0, added.stderr)
    const { cid } = JSON.parse(added.stdout) as { cid: string }

    const made = await runCli(['link', cid, '--json', '--data', a.dataDir])
    assert.equal(made.code, 0, made.stderr)
    const { code } = JSON.parse(made.stdout) as { code: string, link: string }
    assert.ok(code.startsWith(`pv:content=${cid}&peer=`), code)
    assert.ok(parseLink(code).peers.every(p => linkPeerId(p) === a.ready.peerId))

    assert.deepEqual(await peersOf(b), [])
    const out = join(dir, 'got.bin')
    const got = await runCli(['get', code, '-o', out, '--json', '--data', b.dataDir])
    assert.equal(got.code, 0, got.stderr)
    assert.equal((JSON.parse(got.stdout) as { cid: string }).cid, cid)
    assert.deepEqual(new Uint8Array(await readFile(out)), bytes)

    // A directory, fetched by a peer that knows no one through the API with the browser link.
    const tree = join(dir, 'tree')
    await mkdir(tree)
    await writeFile(join(tree, 'one.txt'), 'one')
    await writeFile(join(tree, 'two.bin'), seededBytes(300_000, 162))
    const dirAdded = await runCli(['add', tree, '--json', '--data', a.dataDir])
    assert.equal(dirAdded.code, 0, dirAdded.stderr)
    const dirCid = (JSON.parse(dirAdded.stdout) as { cid: string }).cid
    const { link } = await a.api.request<{ code: string, link: string }>('GET', `/api/v0/content/link?cid=${dirCid}`)
    assert.ok(link.startsWith(`${(await readApiInfo(a.dataDir)).url}/#content=${dirCid}&peer=`), link)
    assert.deepEqual(await peersOf(c), [])
    const lines = await fetchLines(c, { link })
    const last = lines.at(-1) ?? {}
    assert.equal(last.done, true, JSON.stringify(last))
    assert.equal(last.kind, 'directory')
    const { entries } = await c.api.request<{ entries: Array<{ name: string, cid: string }> }>('GET', `/api/v0/content/ls/${dirCid}`)
    assert.deepEqual(entries.map(e => e.name), ['one.txt', 'two.bin'])
    for (const e of entries) {
      const stat = await c.api.request<{ localBlocks: number, blocks: number }>('GET', `/api/v0/content/stat/${e.cid}`)
      assert.equal(stat.localBlocks, stat.blocks, `${e.name} is whole on C`)
    }
  })

  it('refuses bad links with named errors and says the link\'s peers were tried', async () => {
    // How long B looks for holders is a setting (content.noHoldersTimeoutMs, default NO_HOLDERS_TIMEOUT_MS); a short one keeps the test short.
    const deadline = MIN_LOOKUP_TIMEOUT_MS * 3
    assert.ok(deadline < NO_HOLDERS_TIMEOUT_MS)
    const [a, b] = await Promise.all([set.start(), set.start({ config: { content: { noHoldersTimeoutMs: deadline } } })])
    const { cid } = await (await ApiClient.check(await a.api.raw('POST', '/api/v0/content/add?name=x', { body: seededBytes(5000, 163) as unknown as BodyInit, headers: { 'content-type': 'application/octet-stream' } }))).json() as { cid: string }

    let r = await refusal(fetchLines(b, { link: 'pv:content=not-a-cid' }))
    assert.deepEqual([r.status, r.code], [400, 'InvalidLinkError'])
    r = await refusal(fetchLines(b, { link: `pv:content=${cid}&peer=/ip4/127.0.0.1/tcp/1` }))
    assert.deepEqual([r.status, r.code], [400, 'InvalidLinkError'], 'a peer address must name its peer id')
    r = await refusal(fetchLines(b, { link: `pv:space=${cid}` }))
    assert.deepEqual([r.status, r.code], [400, 'WrongLinkKindError'])
    r = await refusal(b.api.request('GET', '/api/v0/content/link?cid=nonsense'))
    assert.deepEqual([r.status, r.code], [400, 'InvalidCidError'])
    const cli = await runCli(['get', `pv:join=${cid}`, '--data', b.dataDir])
    assert.equal(cli.code, 1)
    assert.match(cli.stderr, /this is a join link; a content link was expected/)
    assert.deepEqual(await peersOf(b), [], 'a refused link dials no one')

    // A's id at a port where no one listens: the link's peer is tried, then the DHT, then it fails.
    const unreachable = `/ip4/127.0.0.1/tcp/${await closedPort()}/p2p/${a.ready.peerId}`
    const lines = await fetchLines(b, { link: `pv:content=${cid}&peer=${encodeURIComponent(unreachable)}` })
    const last = lines.at(-1) ?? {}
    assert.equal(last.error, 'NoProvidersError', JSON.stringify(last))
    assert.match(String(last.message), new RegExp(`the link's peers \\(${a.ready.peerId}\\)`))
  })
})
