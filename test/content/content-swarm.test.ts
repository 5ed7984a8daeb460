/**
 * Content that swarms: real `peerverse` processes on loopback add, fetch, serve and stream files.
 * One peer adds a file of FILE_LEAVES leaves and four fetch it at once; a fifth fetches from those
 * four with the original stopped. A lying holder is banned while the download completes from honest ones. A
 * holder killed mid-transfer costs nothing; a downloader killed mid-transfer resumes. A peer that
 * holds nothing serves HTTP Range requests by streaming from the swarm.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Stream } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import * as lp from 'it-length-prefixed'
import { importer } from 'ipfs-unixfs-importer'
import { MemoryBlockstore } from 'blockstore-core'
import { createNetwork, type Network } from '../../src/net/network.ts'
import { decodeMessage, encodeMessage, SWARM_PROTOCOL, type SwarmMessage } from '../../src/content/swarm-wire.ts'
import { PeerSet, runCli, waitFor, type CliPeer } from '../helpers/cli-peer.ts'
import { EventLog } from '../helpers/events.ts'
import { seededBytes } from '../helpers/random.ts'

const MiB = 1024 * 1024
/** Leaves (1 MiB each) of the file the swarm shares: enough for every holder's window several times over. */
const FILE_LEAVES = 32
/** Leaves of the file the interruption tests fetch: long enough to kill a peer mid-transfer. */
const BIG_LEAVES = 64
const set = new PeerSet()

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

interface StatusContent { content: { blocksServed: number, blocksFetched: number, usedBytes: number, blocks: number } }
interface Stat { kind: string, size: number, blocks: number, localBlocks: number, pinned: boolean }

async function status (p: CliPeer): Promise<StatusContent> {
  return await p.api.request<StatusContent>('GET', '/api/v0/status')
}

async function add (p: CliPeer, path: string): Promise<string> {
  const r = await runCli(['add', path, '--data', p.dataDir, '--json'])
  assert.equal(r.code, 0, r.stderr)
  return (JSON.parse(r.stdout) as { cid: string }).cid
}

async function get (p: CliPeer, cid: string, out: string): Promise<{ fetchedBlocks: number, size: number }> {
  const r = await runCli(['get', cid, '-o', out, '--data', p.dataDir, '--json'])
  assert.equal(r.code, 0, r.stderr)
  return JSON.parse(r.stdout)
}

/** Starts a fetch through the API and calls `onLine` with each NDJSON line until it ends. */
async function fetchLines (p: CliPeer, cid: string, onLine: (line: Record<string, any>) => void | Promise<void>): Promise<Record<string, any>> {
  const res = await p.api.raw('POST', '/api/v0/content/fetch', { body: JSON.stringify({ cid }), headers: { 'content-type': 'application/json' } })
  assert.equal(res.status, 200)
  let buffer = ''
  let last: Record<string, any> = {}
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buffer += Buffer.from(chunk).toString()
    let nl: number
    while ((nl = buffer.indexOf('\n')) >= 0) {
      last = JSON.parse(buffer.slice(0, nl))
      buffer = buffer.slice(nl + 1)
      await onLine(last)
    }
  }
  return last
}

describe('content swarm', { timeout: 600_000 }, () => {
  let work: string
  let original: CliPeer
  const four: CliPeer[] = []
  let fileMain: Uint8Array
  let cidMain: string

  before(async () => {
    work = await set.tempDir()
    fileMain = seededBytes(FILE_LEAVES * MiB, 64)
    await writeFile(join(work, 'big.bin'), fileMain)
    original = await set.start()
    four.push(...await Promise.all([0, 1, 2, 3].map(async () => await set.start({ bootstrap: [original.addr] }))))
  })

  after(async () => { await set.cleanup() })

  it('one peer adds a multi-block file, four fetch it at once and all end with identical bytes', async () => {
    cidMain = await add(original, join(work, 'big.bin'))
    // The original announced the root: a DHT lookup from another peer names it.
    await waitFor('a provider record for the root', async () => {
      const { providers } = await four[3].api.request<{ providers: string[] }>('GET', `/api/v0/dht/providers/${cidMain}`)
      return providers.includes(original.ready.peerId)
    }, 20_000)
    const results = await Promise.all(four.map(async (p, i) => await get(p, cidMain, join(work, `got-${i}.bin`))))
    const want = sha(fileMain)
    for (let i = 0; i < 4; i++) {
      assert.equal(sha(await readFile(join(work, `got-${i}.bin`))), want, `downloader ${i} bytes`)
      assert.equal(results[i].size, FILE_LEAVES * MiB)
    }
    // Every leaf came over the network once per downloader, from the original or from each other.
    const fetched = await Promise.all(four.map(async p => (await status(p)).content.blocksFetched))
    for (const n of fetched) assert.ok(n >= FILE_LEAVES, `fetched ${n} blocks`)
    const servedByOriginal = (await status(original)).content.blocksServed
    const servedByFour = (await Promise.all(four.map(async p => (await status(p)).content.blocksServed))).reduce((a, b) => a + b, 0)
    assert.ok(servedByOriginal + servedByFour >= 4 * FILE_LEAVES, `served ${servedByOriginal} + ${servedByFour}`)
  })

  it('a fifth fetches from the four with the original stopped', async () => {
    assert.equal(await set.stop(original), 0)
    const fifth = await set.start({ bootstrap: [four[0].addr] })
    // Each of the four announced the root once it held all of it.
    await waitFor('the four are providers of the root', async () => {
      const { providers } = await fifth.api.request<{ providers: string[] }>('GET', `/api/v0/dht/providers/${cidMain}`)
      return four.filter(p => providers.includes(p.ready.peerId)).length >= 2
    }, 20_000)
    const before = await Promise.all(four.map(async p => (await status(p)).content.blocksServed))
    await get(fifth, cidMain, join(work, 'got-5.bin'))
    assert.equal(sha(await readFile(join(work, 'got-5.bin'))), sha(fileMain))
    const after = await Promise.all(four.map(async p => (await status(p)).content.blocksServed))
    const served = after.map((n, i) => n - before[i])
    assert.ok(served.reduce((a, b) => a + b, 0) >= FILE_LEAVES, `the four served ${served.join('+')}`)
    assert.ok(served.filter(n => n > 0).length >= 2, `blocks came from several peers: ${served.join(', ')}`)
    await set.stop(fifth)
  })

  it('a lying holder is banned and the download completes from honest holders', async () => {
    // The downloader starts with no peers, so the liar is its only holder until it is banned; the
    // honest holder is connected only after that, so the liar is asked whatever the timing.
    const downloader = await set.start()
    const log = await EventLog.open(downloader)
    const liar: Network = await createNetwork({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'], relayServer: false, dhtMode: 'client' })
    await liar.start()
    let badBlocks = 0
    const leaf0 = fileMain.subarray(0, MiB)
    await liar.handle(SWARM_PROTOCOL, async (stream: Stream) => {
      const send = (msg: SwarmMessage): void => { stream.send(lp.encode.single(encodeMessage(msg))) }
      try {
        for await (const frame of lp.decode(stream, { maxDataLength: 1024 })) {
          const msg = decodeMessage(frame.subarray())
          if (msg.type === 'open') send({ type: 'bitfield', status: 'complete', leaves: 0, bits: new Uint8Array(0) })
          if (msg.type === 'want') {
            // Alternately a corrupted block and a genuine block of other content.
            const bytes = badBlocks % 2 === 0 ? seededBytes(MiB, 1000 + badBlocks) : leaf0
            badBlocks++
            send({ type: 'block', cid: msg.cid, bytes })
          }
        }
      } catch {}
    }, { maxInboundStreams: 32 })
    try {
      await liar.dial(multiaddr(downloader.addr))
      const got = get(downloader, cidMain, join(work, 'got-liar.bin'))
      got.catch(() => {})
      await waitFor('the liar is rejected', () => log.events.some(e => e.type === 'peer:rejected' && e.peerId === liar.peerId.toString()), 20_000)
      assert.ok(badBlocks >= 1, 'the liar was asked for blocks')
      await downloader.api.request('POST', '/api/v0/connect', { address: four[0].addr })
      await got
      assert.equal(sha(await readFile(join(work, 'got-liar.bin'))), sha(fileMain))
      const rejected = log.events.filter(e => e.type === 'peer:rejected' && e.peerId === liar.peerId.toString())
      assert.equal(rejected.length, 1, JSON.stringify(rejected))
      assert.equal(rejected[0].protocol, SWARM_PROTOCOL)
      assert.match(String(rejected[0].error), /^BadBlockError/)
      await waitFor('the liar is disconnected', () => liar.getConnections().every(c => c.remotePeer.toString() !== downloader.ready.peerId), 10_000)
    } finally {
      log.close()
      await liar.stop()
      await set.stop(downloader)
    }
  })

  describe(`interruptions (${BIG_LEAVES} MiB)`, () => {
    let fileBig: Uint8Array
    let cidBig: string
    const holders: CliPeer[] = []

    before(async () => {
      fileBig = seededBytes(BIG_LEAVES * MiB, 256)
      await writeFile(join(work, 'huge.bin'), fileBig)
      holders.push(four[1], four[2])
      const cids = await Promise.all(holders.map(async h => await add(h, join(work, 'huge.bin'))))
      assert.equal(cids[0], cids[1])
      cidBig = cids[0]
    })

    it('a holder killed (kill -9) mid-transfer costs nothing: the download completes from the other', async () => {
      const downloader = await set.start({ bootstrap: [holders[0].addr, holders[1].addr] })
      await waitFor('connected to both holders', async () => {
        const { peers } = await downloader.api.request<{ peers: Array<{ peerId: string }> }>('GET', '/api/v0/peers')
        return holders.every(h => peers.some(p => p.peerId === h.ready.peerId))
      })
      let killedAt = -1
      const last = await fetchLines(downloader, cidBig, async line => {
        if (killedAt < 0 && line.progress != null && line.progress.bytes > 0 && line.progress.bytes < line.progress.total) {
          killedAt = line.progress.bytes
          await set.kill(holders[0])
        }
      })
      assert.equal(last.done, true, JSON.stringify(last))
      assert.ok(killedAt > 0 && killedAt < BIG_LEAVES * MiB, `killed mid-transfer at ${killedAt}`)
      const r = await downloader.api.raw('GET', `/content/${cidBig}`)
      assert.equal(sha(new Uint8Array(await r.arrayBuffer())), sha(fileBig))
      await set.stop(downloader)
    })

    it('a downloader killed mid-transfer resumes after restart without fetching held blocks again', async () => {
      const dir = await set.tempDir()
      let downloader = await set.start({ dataDir: dir, bootstrap: [holders[1].addr] })
      let heldAtKill = -1
      await fetchLines(downloader, cidBig, async line => {
        if (heldAtKill < 0 && line.progress != null && line.progress.bytes >= 8 * MiB && line.progress.bytes < line.progress.total) {
          heldAtKill = line.progress.bytes / MiB
          await set.kill(downloader)
        }
      }).catch(() => {})
      assert.ok(heldAtKill >= 8 && heldAtKill < BIG_LEAVES, `killed with ${heldAtKill} blocks held`)
      downloader = await set.start({ dataDir: dir, bootstrap: [holders[1].addr] })
      const result = await get(downloader, cidBig, join(work, 'resumed.bin'))
      assert.equal(sha(await readFile(join(work, 'resumed.bin'))), sha(fileBig))
      // Everything fetched since the restart (the resumed background download and this get).
      const fetched = (await status(downloader)).content.blocksFetched
      assert.ok(fetched <= BIG_LEAVES - heldAtKill, `fetched ${fetched} after restart, ${heldAtKill} were held`)
      assert.ok(result.fetchedBlocks <= fetched)
      await set.stop(downloader)
    })
  })

  it('a peer that holds nothing answers HTTP Range requests by streaming from the swarm', async () => {
    const reader = await set.start({ bootstrap: [four[0].addr] })
    const url = `/content/${cidMain}`
    const range = async (header: string | undefined, method = 'GET'): Promise<Response> =>
      await reader.api.raw(method, url, { headers: header == null ? {} : { range: header } })

    let r = await range('bytes=5000000-5065535')
    assert.equal(r.status, 206)
    assert.equal(r.headers.get('content-range'), `bytes 5000000-5065535/${FILE_LEAVES * MiB}`)
    assert.equal(r.headers.get('content-length'), '65536')
    assert.equal(r.headers.get('accept-ranges'), 'bytes')
    assert.equal(r.headers.get('etag'), `"${cidMain}"`)
    assert.deepEqual(new Uint8Array(await r.arrayBuffer()), fileMain.subarray(5000000, 5065536))

    r = await range('bytes=-100')
    assert.equal(r.status, 206)
    assert.equal(r.headers.get('content-range'), `bytes ${FILE_LEAVES * MiB - 100}-${FILE_LEAVES * MiB - 1}/${FILE_LEAVES * MiB}`)
    assert.deepEqual(new Uint8Array(await r.arrayBuffer()), fileMain.subarray(FILE_LEAVES * MiB - 100))

    r = await range(`bytes=${FILE_LEAVES * MiB - 10}-`)
    assert.equal(r.status, 206)
    assert.deepEqual(new Uint8Array(await r.arrayBuffer()), fileMain.subarray(FILE_LEAVES * MiB - 10))

    r = await range(`bytes=${FILE_LEAVES * MiB}-`)
    assert.equal(r.status, 416)
    assert.equal(r.headers.get('content-range'), `bytes */${FILE_LEAVES * MiB}`)
    await r.arrayBuffer()

    r = await range(undefined, 'HEAD')
    assert.equal(r.status, 200)
    assert.equal(r.headers.get('content-length'), String(FILE_LEAVES * MiB))

    r = await reader.api.raw('GET', url, { headers: { 'if-none-match': `"${cidMain}"` } })
    assert.equal(r.status, 304)

    // Without the token the content is refused like the rest of the API.
    const bare = await fetch(reader.api.url + url)
    assert.equal(bare.status, 401)
    await bare.arrayBuffer()
    await set.stop(reader)
  })

  it('directories: add gives the CID IPFS tools give, get writes the tree, paths resolve over HTTP', async () => {
    const tree = join(work, 'world')
    await mkdir(join(tree, 'models'), { recursive: true })
    const files: Record<string, Uint8Array> = {
      'README.txt': new TextEncoder().encode('a small world\n'),
      'models/tree.glb': new Uint8Array([...new TextEncoder().encode('glTF'), ...seededBytes(3 * MiB + 7, 5)]),
      'models/Rock.glb': seededBytes(1000, 6),
      'song.mp3': new Uint8Array([0x49, 0x44, 0x33, ...seededBytes(5000, 7)])
    }
    for (const [name, bytes] of Object.entries(files)) await writeFile(join(tree, name), bytes)
    const cid = await add(four[0], tree)

    let reference = ''
    const entries = Object.entries(files).map(([name, bytes]) => ({ path: `world/${name}`, content: bytes }))
    for await (const e of importer(entries, new MemoryBlockstore(), { profile: 'unixfs-v1-2025', wrapWithDirectory: false })) {
      if (e.path === 'world') reference = e.cid.toString()
    }
    assert.equal(cid, reference)

    const other = four[3]
    await get(other, cid, join(work, 'world-copy'))
    for (const [name, bytes] of Object.entries(files)) {
      assert.deepEqual(new Uint8Array(await readFile(join(work, 'world-copy', name))), bytes, name)
    }
    const reader = await set.start({ bootstrap: [four[0].addr] })
    const r = await reader.api.raw('GET', `/content/${cid}/models/tree.glb`, { headers: { range: 'bytes=0-3' } })
    assert.equal(r.status, 206)
    assert.equal(r.headers.get('content-type'), 'model/gltf-binary')
    assert.equal(Buffer.from(await r.arrayBuffer()).toString(), 'glTF')
    const song = await reader.api.raw('HEAD', `/content/${cid}/song.mp3`)
    assert.equal(song.headers.get('content-type'), 'audio/mpeg')
    const missing = await reader.api.raw('GET', `/content/${cid}/models/nope.glb`)
    assert.equal(missing.status, 404)
    assert.equal((await missing.json() as { error: string }).error, 'PathNotFoundError')
    await set.stop(reader)
  })

  it('pin, unpin, ls and gc: fetched content is cached until collected, pinned content is kept', async () => {
    const p = four[3]
    const ls = async (): Promise<string[]> => {
      const r = await runCli(['ls', '--data', p.dataDir, '--json'])
      assert.equal(r.code, 0, r.stderr)
      return (JSON.parse(r.stdout) as Array<{ cid: string }>).map(x => x.cid)
    }
    assert.ok(!(await ls()).includes(cidMain), 'a fetched CID is not pinned')
    let r = await runCli(['pin', cidMain, '--data', p.dataDir])
    assert.equal(r.code, 0, r.stderr)
    assert.ok((await ls()).includes(cidMain))
    r = await runCli(['gc', '--data', p.dataDir, '--json'])
    assert.equal(r.code, 0, r.stderr)
    let stat = await p.api.request<Stat>('GET', `/api/v0/content/stat/${cidMain}`)
    assert.equal(stat.localBlocks, FILE_LEAVES, 'pinned blocks survive gc')
    r = await runCli(['unpin', cidMain, '--data', p.dataDir])
    assert.equal(r.code, 0, r.stderr)
    const before = (await status(p)).content.usedBytes
    r = await runCli(['gc', '--data', p.dataDir, '--json'])
    assert.equal(r.code, 0, r.stderr)
    const { removed, freed } = JSON.parse(r.stdout) as { removed: number, freed: number }
    assert.ok(removed >= FILE_LEAVES + 1, `removed ${removed}`)
    assert.equal((await status(p)).content.usedBytes, before - freed)
    stat = await p.api.request<Stat>('GET', `/api/v0/content/stat/${cidMain}`)
    assert.equal(stat.localBlocks, 0)
    r = await runCli(['get', 'not-a-cid', '--data', p.dataDir])
    assert.equal(r.code, 1)
    assert.match(r.stderr, /InvalidCidError|not a CID/)
  })
})
