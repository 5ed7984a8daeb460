/**
 * Downloads that stop when asked, and downloads that are given up. A real `peerverse` process
 * fetches from a slow seeder on loopback (a bare libp2p peer in the test that serves real blocks
 * only as the test lets it): Ctrl-C on `peerverse get` ends the download at once, so the seeder
 * sees its session close, gets no more requests, and nothing resumes after a restart; with two
 * requests for the same CID, aborting one leaves the other to finish. A download that never finds
 * a holder is given up after MAX_UNFOUND_DOWNLOAD_ATTEMPTS starts (or its age) and says so. A get
 * onto a full disk (a real tmpfs) fails with DiskFullError after a bounded number of blocks, is
 * not resumed, and gc on the full disk frees what it fetched.
 */
import { describe, it, after, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { createHash } from 'node:crypto'
import { open, readFile, rm, statfs } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Stream } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import * as lp from 'it-length-prefixed'
import type { CID } from 'multiformats/cid'
import { content, MAX_UNFOUND_DOWNLOAD_AGE_MS, MAX_UNFOUND_DOWNLOAD_ATTEMPTS } from '../../src/content/index.ts'
import type { StoreState, UnwantedDownloads } from '../../src/content/download-records.ts'
import type { Blockstore } from '../../src/content/blockstore.ts'
import { decodeMessage, encodeMessage, SWARM_PROTOCOL } from '../../src/content/swarm-wire.ts'
import { CHUNK_SIZE, importFile, rawBlock } from '../../src/content/unixfs.ts'
import { createNetwork, type Network } from '../../src/net/network.ts'
import { createNode, type PeerverseNode } from '../../src/node/node.ts'
import { defaultConfig, mergeConfig } from '../../src/node/config.ts'
import { CLI, PeerSet, runCli, waitFor, type CliPeer } from '../helpers/cli-peer.ts'
import { cleanups, tempDir } from '../helpers/cleanup.ts'
import { seededBytes } from '../helpers/random.ts'
import { mountTmpfs } from '../store/tmpfs.ts'

const MiB = 1024 * 1024
/** Leaves of the file an aborted get leaves behind: several more than the seeder lets through before the abort. */
const ABORTED_LEAVES = 8
const set = new PeerSet()
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

/**
 * A seeder that holds one file and sends a block only while the test allows (`allow`), so a
 * download can be caught part way. It records every session and request it sees.
 */
class SlowSeeder {
  readonly net: Network
  readonly blocks = new Map<string, Uint8Array>()
  opens = 0
  open = 0
  wants = 0
  sent = 0
  private allowed = 0
  private readonly wakers = new Set<() => void>()

  private constructor (net: Network) { this.net = net }

  static async start (): Promise<SlowSeeder> {
    const net = await createNetwork({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'], relayServer: false, dhtMode: 'client' })
    await net.start()
    const seeder = new SlowSeeder(net)
    await net.handle(SWARM_PROTOCOL, (stream: Stream) => { void seeder.serve(stream) }, { maxInboundStreams: 32 })
    return seeder
  }

  async add (data: Uint8Array): Promise<CID> {
    return (await importFile([data], async b => { this.blocks.set(b.cid.toString(), b.bytes) })).cid
  }

  /** Lets `n` more blocks go (Infinity: all). */
  allow (n: number): void {
    this.allowed += n
    for (const w of this.wakers) w()
    this.wakers.clear()
  }

  private async serve (stream: Stream): Promise<void> {
    this.opens++
    this.open++
    const queue: CID[] = []
    let ended = false
    const wait = async (): Promise<void> => { await new Promise<void>(resolve => { this.wakers.add(resolve) }) }
    const sender = (async () => {
      while (!ended) {
        if (queue.length === 0 || this.sent >= this.allowed) { await wait(); continue }
        const cid = queue.shift() as CID
        try {
          stream.send(lp.encode.single(encodeMessage({ type: 'block', cid, bytes: this.blocks.get(cid.toString()) as Uint8Array })))
        } catch {
          break
        }
        this.sent++
      }
    })()
    try {
      for await (const frame of lp.decode(stream, { maxDataLength: 1024 })) {
        const msg = decodeMessage(frame.subarray())
        if (msg.type === 'open') stream.send(lp.encode.single(encodeMessage({ type: 'bitfield', status: 'complete', leaves: 0, bits: new Uint8Array(0) })))
        if (msg.type === 'want') { this.wants++; queue.push(msg.cid) }
        if (msg.type === 'cancel') { const i = queue.findIndex(c => c.equals(msg.cid)); if (i >= 0) queue.splice(i, 1) }
        for (const w of this.wakers) w()
        this.wakers.clear()
      }
    } catch {}
    ended = true
    this.open--
    for (const w of this.wakers) w()
    this.wakers.clear()
    await sender
  }

  async stop (): Promise<void> {
    this.allow(Infinity)
    await this.net.stop()
  }
}

interface StatusContent { content: { blocksFetched: number } }

async function fetched (p: CliPeer): Promise<number> {
  return (await p.api.request<StatusContent>('GET', '/api/v0/status')).content.blocksFetched
}

/** Watches for `ms` that `still` keeps holding (an absence: nothing more happens). */
async function holdsFor (what: string, ms: number, still: () => Promise<boolean> | boolean): Promise<void> {
  const end = Date.now() + ms
  while (Date.now() < end) {
    assert.ok(await still(), what)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}

describe('downloads that stop when asked', { timeout: 300_000 }, () => {
  after(async () => { await set.cleanup() })

  it('Ctrl-C on peerverse get stops the download: the session closes, no more blocks arrive, nothing resumes after a restart', async () => {
    const dir = await set.tempDir()
    let downloader = await set.start({ dataDir: dir })
    const seeder = await SlowSeeder.start()
    try {
      const data = seededBytes(ABORTED_LEAVES * MiB, 70)
      const root = await seeder.add(data)
      await seeder.net.dial(multiaddr(downloader.addr))
      seeder.allow(3)
      const proc = spawn(process.execPath, [CLI, 'get', root.toString(), '-o', join(dir, 'out.bin'), '--data', dir], { stdio: ['ignore', 'pipe', 'pipe'] })
      let stderr = ''
      proc.stderr.on('data', d => { stderr += d })
      const exited = once(proc, 'exit') as Promise<[number | null, string | null]>
      await waitFor('three blocks arrived', async () => seeder.sent === 3 && await fetched(downloader) === 3, 30_000)
      assert.equal(seeder.open, 1)
      proc.kill('SIGINT')
      const [code] = await exited
      assert.equal(code, 130, stderr)
      // The peer ends the download when the request goes: its session with the seeder closes.
      await waitFor('the seeder\'s session is closed', () => seeder.open === 0, 20_000)
      const wants = seeder.wants
      const got = await fetched(downloader)
      assert.ok(got <= 3, `fetched ${got}`)
      seeder.allow(Infinity)
      await holdsFor('no new session, request or block after the abort', 3_000, async () =>
        seeder.opens === 1 && seeder.wants === wants && await fetched(downloader) === got)

      // The aborted get is not resumed when the peer starts again.
      assert.equal(await set.stop(downloader), 0)
      downloader = await set.start({ dataDir: dir })
      await seeder.net.dial(multiaddr(downloader.addr))
      await holdsFor('no session opened after the restart', 3_000, () => seeder.opens === 1)

      // A get run again resumes from the blocks already here and finishes.
      const r = spawn(process.execPath, [CLI, 'get', root.toString(), '-o', join(dir, 'out.bin'), '--data', dir, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] })
      let out = ''
      r.stdout.on('data', d => { out += d })
      const [again] = await once(r, 'exit') as [number]
      assert.equal(again, 0)
      assert.equal(sha(await readFile(join(dir, 'out.bin'))), sha(data))
      assert.ok((JSON.parse(out) as { fetchedBlocks: number }).fetchedBlocks <= ABORTED_LEAVES + 1 - got, out)
    } finally {
      await seeder.stop()
      await set.stop(downloader)
    }
  })

  it('aborting one of two requests for the same CID leaves the other to finish', async () => {
    const downloader = await set.start()
    const seeder = await SlowSeeder.start()
    try {
      const data = seededBytes(16 * MiB, 71)
      const root = await seeder.add(data)
      await seeder.net.dial(multiaddr(downloader.addr))
      seeder.allow(2)
      const body = JSON.stringify({ cid: root.toString() })
      const headers = { 'content-type': 'application/json' }
      const controller = new AbortController()
      // A fetch's answer starts with its first progress line, written once it waits on the
      // download: both requests wait on it before one is aborted (a request still on its way
      // when the other goes finds no download and rightly starts its own).
      const first = await downloader.api.raw('POST', '/api/v0/content/fetch', { body, headers, signal: controller.signal })
      const second = await downloader.api.raw('POST', '/api/v0/content/fetch', { body, headers })
      await waitFor('two blocks arrived', async () => seeder.sent === 2 && await fetched(downloader) === 2, 30_000)
      assert.equal(seeder.opens, 1)
      controller.abort()
      await first.body?.cancel().catch(() => {})
      // The one session is neither closed nor closed and opened again (which polling `open` alone could miss).
      await holdsFor('the session stays open for the other request', 1_000, () => seeder.opens === 1 && seeder.open === 1)
      seeder.allow(Infinity)
      const lines = (await second.text()).trim().split('\n').map(l => JSON.parse(l) as Record<string, unknown>)
      assert.equal(lines.at(-1)?.done, true, JSON.stringify(lines.at(-1)))
      const r = await downloader.api.raw('GET', `/content/${root.toString()}`)
      assert.equal(sha(new Uint8Array(await r.arrayBuffer())), sha(data))
    } finally {
      await seeder.stop()
      await set.stop(downloader)
    }
  })
})

describe('downloads that never find a holder', { timeout: 300_000 }, () => {
  /** A node on `dir` (loopback, no API), started; stop it before the next. */
  async function startNode (dir: string): Promise<PeerverseNode> {
    const node = await createNode(mergeConfig(defaultConfig(dir), { discovery: { mdns: false }, listen: ['/ip4/127.0.0.1/tcp/0'], api: false, dht: { mode: 'server' }, relay: { server: false } }))
    await node.start()
    return node
  }

  it(`are given up after ${MAX_UNFOUND_DOWNLOAD_ATTEMPTS} attempts, named in the content status; one that found a holder is kept`, async t => {
    const defer = cleanups(t)
    const dir = await tempDir(defer, 'downloads')
    const missing = (await rawBlock(seededBytes(100, 80))).cid
    // A two-leaf file of which only the root is here.
    const nodes: Array<{ cid: CID, bytes: Uint8Array }> = []
    const partial = (await importFile([seededBytes(2 * CHUNK_SIZE, 81)], async b => { nodes.push(b) })).cid
    const partialRoot = nodes.find(b => b.cid.equals(partial)) as { cid: CID, bytes: Uint8Array }
    let node = await startNode(dir)
    defer(async () => node.stop())
    const blocks = node.content['blockstore'] as Blockstore
    // The user's get: its first attempt (it found nothing and the peer stopped).
    await blocks.markDownload({ cid: missing.toString(), attempts: 1, since: Date.now(), found: false })
    // A download whose root is here: it found a holder once, so it is never given up.
    await blocks.put(partialRoot.cid, partialRoot.bytes)
    await blocks.markDownload({ cid: partial.toString(), attempts: 1, since: Date.now(), found: false })
    for (let attempt = 2; attempt <= MAX_UNFOUND_DOWNLOAD_ATTEMPTS; attempt++) {
      await node.stop()
      node = await startNode(dir)
      const store = node.content['blockstore'] as Blockstore
      await waitFor(`attempt ${attempt} recorded`, async () => (await store.getDownload(missing))?.attempts === attempt, 10_000, 50)
      assert.deepEqual(node.content.status().abandonedDownloads, [])
    }
    await node.stop()
    node = await startNode(dir)
    const store = node.content['blockstore'] as Blockstore
    assert.equal(await store.getDownload(missing), undefined, 'the record is gone')
    const abandoned = node.content.status().abandonedDownloads
    assert.equal(abandoned.length, 1)
    assert.equal(abandoned[0].cid, missing.toString())
    assert.equal(abandoned[0].attempts, MAX_UNFOUND_DOWNLOAD_ATTEMPTS)
    assert.match(abandoned[0].reason, /no holder found/)
    assert.deepEqual(node.status().content.abandonedDownloads.map(a => a.cid), [missing.toString()])
    // The found one was resumed and is still waiting for its holders.
    await waitFor('the found one resumed', async () => (await store.getDownload(partial))?.attempts === MAX_UNFOUND_DOWNLOAD_ATTEMPTS + 1, 10_000, 50)
    assert.equal((await store.getDownload(partial))?.found, true)
  })

  it('peerverse start warns of a download it gives up', async t => {
    const defer = cleanups(t)
    const dir = await set.tempDir()
    const missing = (await rawBlock(seededBytes(100, 91))).cid
    const offline = await createNode(mergeConfig(defaultConfig(dir), { discovery: { mdns: false }, listen: ['/ip4/127.0.0.1/tcp/0'], api: false }))
    await (offline.content['blockstore'] as Blockstore).markDownload({ cid: missing.toString(), attempts: MAX_UNFOUND_DOWNLOAD_ATTEMPTS, since: Date.now(), found: false })
    await offline.stop()
    const peer = await set.start({ dataDir: dir })
    defer(async () => { await set.kill(peer) })
    await waitFor('the warning', () => peer.stderr().includes(`gave up the download of ${missing.toString()}`), 10_000, 50)
    assert.match(peer.stderr(), /no holder found in \d+ attempts/)
  })

  it('one older than MAX_UNFOUND_DOWNLOAD_AGE_MS is given up on the next start', async t => {
    const defer = cleanups(t)
    const dir = await tempDir(defer, 'downloads')
    const missing = (await rawBlock(seededBytes(100, 90))).cid
    let node = await startNode(dir)
    defer(async () => node.stop())
    await (node.content['blockstore'] as Blockstore).markDownload({ cid: missing.toString(), attempts: 1, since: Date.now() - MAX_UNFOUND_DOWNLOAD_AGE_MS - 60_000, found: false })
    await node.stop()
    node = await startNode(dir)
    assert.equal(await (node.content['blockstore'] as Blockstore).getDownload(missing), undefined)
    assert.deepEqual(node.content.status().abandonedDownloads.map(a => [a.cid, a.attempts]), [[missing.toString(), 1]])
  })
})

/** Writes a filler file on `dir` until only about `leave` bytes are free there. */
async function fillTo (dir: string, leave: number): Promise<string> {
  const path = join(dir, 'filler')
  const fs = await statfs(dir)
  let goal = fs.bavail * fs.bsize - leave
  const fh = await open(path, 'w')
  try {
    const chunk = new Uint8Array(MiB).fill(9)
    while (goal > 0) {
      const { bytesWritten } = await fh.write(chunk, 0, Math.min(goal, chunk.length))
      goal -= bytesWritten
    }
  } finally {
    await fh.close()
  }
  return path
}

describe('a get onto a full disk', { timeout: 300_000 }, () => {
  after(async () => { await set.cleanup() })

  it('fails with DiskFullError within a bounded number of blocks, leaves the peer usable, is not resumed after a restart, and gc on the full disk frees its blocks', async (t: TestContext) => {
    const defer = cleanups(t)
    const disk = await mountTmpfs(t, defer, 64)
    if (disk == null) return
    const dir = join(disk, 'peer')
    let peer = await set.start({ dataDir: dir })
    defer(async () => { await set.kill(peer) })
    // Blocks held before the get: the chain's genesis, pinned on every start.
    const pinnedBefore = (await peer.api.request<{ blocks: number }>('GET', '/api/v0/content/store')).blocks
    const seeder = await SlowSeeder.start()
    defer(async () => { await seeder.stop() })
    const data = seededBytes(32 * MiB, 72)
    const root = await seeder.add(data)
    const blocks = seeder.blocks.size
    seeder.allow(Infinity)
    await seeder.net.dial(multiaddr(peer.addr))
    const filler = await fillTo(disk, 8 * MiB)
    const out = join(await set.tempDir(), 'out.bin')

    const proc = spawn(process.execPath, [CLI, 'get', root.toString(), '-o', out, '--data', dir], { stdio: ['ignore', 'pipe', 'pipe'] })
    defer(async () => { proc.kill('SIGKILL') })
    let stderr = ''
    proc.stderr.on('data', d => { stderr += d })
    let code: number | null | undefined
    proc.once('exit', c => { code = c })
    // Without an end the download would fetch the same blocks again and again: wait for either.
    await waitFor('the get ends (or fetches more than twice the file)', async () => code !== undefined || await fetched(peer) > 2 * blocks, 120_000)
    const got = await fetched(peer)
    assert.ok(got < 2 * blocks, `fetched ${got} blocks of a ${blocks}-block file`)
    assert.notEqual(code, undefined, 'the get returned')
    assert.notEqual(code, 0)
    assert.match(stderr, /DiskFullError/)
    assert.match(stderr, /no space left/)
    // Nothing is asked for any more, and the peer still answers.
    const wants = seeder.wants
    await holdsFor('no new request or block after the failure', 2_000, async () => seeder.wants === wants && await fetched(peer) === got)
    const held = (await peer.api.request<{ blocks: number }>('GET', '/api/v0/content/store')).blocks - pinnedBefore
    assert.ok(held > 0, 'some blocks were stored before the disk filled')

    // gc on the full disk frees the blocks of the download that ended (and keeps the pinned genesis).
    const gc = await runCli(['gc', '--data', dir, '--json'])
    assert.equal(gc.code, 0, gc.stderr)
    assert.equal((JSON.parse(gc.stdout) as { removed: number }).removed, held)
    assert.equal((await peer.api.request<{ blocks: number }>('GET', '/api/v0/content/store')).blocks, pinnedBefore)

    // After a restart nothing resumes: no session is opened with the seeder.
    assert.equal(await set.stop(peer), 0)
    const opens = seeder.opens
    peer = await set.start({ dataDir: dir })
    await seeder.net.dial(multiaddr(peer.addr))
    await holdsFor('no session opened after the restart', 3_000, async () => seeder.opens === opens && await fetched(peer) === 0)

    // With space again the same get succeeds.
    await rm(filler)
    const again = spawn(process.execPath, [CLI, 'get', root.toString(), '-o', out, '--data', dir], { stdio: ['ignore', 'ignore', 'pipe'] })
    let err2 = ''
    again.stderr.on('data', d => { err2 += d })
    const [ok] = await once(again, 'exit') as [number]
    assert.equal(ok, 0, err2)
    assert.equal(sha(await readFile(out)), sha(data))
  })
})

describe('the record of a download ended while the store refuses writes', () => {
  it('is no root for gc at once and is deleted when the store takes writes again; a new fetch keeps it', async t => {
    const defer = cleanups(t)
    const dir = await tempDir(defer, 'unwanted')
    const node = await createNode(mergeConfig(defaultConfig(dir), { discovery: { mdns: false }, listen: ['/ip4/127.0.0.1/tcp/0'], api: false, dht: { mode: 'server' }, relay: { server: false } }))
    defer(async () => node.stop())
    const blocks = node.content['blockstore'] as Blockstore
    // The store's state as content sees it, refusing writes until the test says otherwise.
    const listeners = new Set<(change: { type: string, writable?: boolean }) => void>()
    const state: StoreState & { writable: boolean } = { writable: false, onChange: l => { listeners.add(l); return () => { listeners.delete(l) } } }
    const svc = content()({ protocols: node['protocols'], routing: node['routing'], onRejected: () => {}, blockstore: blocks, store: state })
    const unwanted = svc['unwanted'] as UnwantedDownloads
    unwanted.start()
    // A partial download: the root and one of its two leaves are here.
    const made: Array<{ cid: CID, bytes: Uint8Array }> = []
    const root = (await importFile([seededBytes(2 * CHUNK_SIZE, 95)], async b => { made.push(b) })).cid
    for (const b of made.slice(0, 2)) await blocks.put(b.cid, b.bytes)
    const other = (await rawBlock(seededBytes(100, 96))).cid
    for (const cid of [root, other]) await blocks.markDownload({ cid: cid.toString(), attempts: 1, since: Date.now(), found: true })

    await unwanted.forget(root.toString())
    await unwanted.forget(other.toString())
    assert.equal(unwanted.pending, 2)
    assert.ok(await blocks.getDownload(root) != null, 'not deleted while the store refuses writes')
    const gc = await svc.gc()
    assert.equal(gc.removed, 2, 'its blocks are no longer kept')
    // `other` is wanted again before the store recovers: its record stays.
    assert.equal(unwanted.keep(other.toString()), true)
    state.writable = true
    for (const l of listeners) l({ type: 'writable', writable: true })
    await waitFor('the record is deleted', async () => await blocks.getDownload(root) == null, 10_000, 20)
    assert.equal(unwanted.pending, 0)
    assert.ok(await blocks.getDownload(other) != null)
    await unwanted.stop()
  })
})
