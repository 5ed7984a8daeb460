/**
 * Content benchmark: how fast the swarm (src/content/swarm.ts) moves a file between peers on one
 * machine, against stock Helia's bitswap (the anchor) and a raw libp2p stream (the ceiling). It
 * prints figures and asserts nothing.
 *
 * Each of our peers is its own process (bench/content-peer.ts), so four seeders and a downloader
 * share the cores as real peers on one host would; every time is taken inside the process that
 * does the work. With BENCH_MIB (default 256) MiB of seeded pseudo-random bytes:
 *
 * a. the ceiling: raw libp2p stream throughput (TCP + Noise + Yamux, one stream, 1 MiB writes as
 *    our block frames are) from a seeder to a downloader, the direction blocks flow, over the
 *    connection (b) then uses, after a 16 MiB warm-up;
 * b. ours 1 -> 1: that downloader, with an empty store, fetches the whole file from the seeder;
 * c. ours 4 -> 1: four seeders (each added the same bytes, so the same CID) to a fresh downloader;
 * d. time to first byte of a 64 KiB range read at a random offset (seeded) of a file the reader
 *    does not hold, each read in a different 1 MiB leaf, 100 reads one after another by a fresh
 *    reader connected to one seeder (run before (c), while the other seeders know no one), then
 *    by one connected to all four; the first read (which opens the sessions and fetches the
 *    root) is also shown alone;
 * e. the anchor: the same bytes between two Helia nodes over bitswap (bench/anchor-helia.ts),
 *    both in this process;
 * f. ours 1 -> 1 with both peers in this process too, a like-for-like pair for the anchor (which
 *    runs both of its nodes on one event loop and keeps blocks in memory);
 * g. ours 1 -> 1 with the downloader's data dir on tmpfs (/dev/shm, when there is one), to show
 *    what writing blocks to the disk costs;
 * h. the trustless gateway: a CARv1 of the whole file (GET /ipfs/CID?format=car) against the raw
 *    byte stream of the same file (GET /content/CID), both read over HTTP from one peer in this
 *    process that holds the file, as a ratio.
 * i. ours serving Bitswap: a Peerverse peer in this process that added the bytes, and a fresh
 *    stock Helia node per run (also in this process) fetching them over bitswap, against (e).
 *
 * Whole-file figures are the median of BENCH_RUNS (default 3) runs, each with a fresh downloader
 * (fresh process, empty data dir, so nothing is cached); the range is printed beside them. CPU is
 * user + system time (all threads) of the downloading process and of the seeding process(es)
 * during the transfer, per MiB. BENCH_SEED (default 1) seeds
 * the bytes and the read offsets. Results go to stdout, progress to stderr. BENCH_PROFILE=<dir>
 * runs downloaders under --cpu-prof and leaves their profiles in <dir>. BENCH_ONLY=gateway runs (h) alone.
 */
import { fork, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { parseCid } from '../src/content/blockstore.ts'
import { defaultConfig, mergeConfig, type NodeConfig } from '../src/node/config.ts'
import { createNode, type PeerverseNode } from '../src/node/node.ts'
import { ApiServer } from '../src/api/server.ts'
import { heliaBitswapFetch, heliaFetchFrom } from './anchor-helia.ts'
import { type FetchResult, type PeerOps, type Ready, type Reply, type Request } from './content-peer.ts'
import { seeded, seededBytes } from './lib.ts'

const MiB = 1024 * 1024
const KiB = 1024

const SEED = Number(process.env.BENCH_SEED ?? 1)
const SIZE_MIB = Number(process.env.BENCH_MIB ?? 256)
const RUNS = Number(process.env.BENCH_RUNS ?? 3)
const PROFILE_DIR = process.env.BENCH_PROFILE
const SIZE = SIZE_MIB * MiB
/** Leaves of the file (1 MiB chunks, src/content/unixfs.ts). */
const LEAVES = SIZE_MIB

const SEEDERS = 4
/** Raw stream: bytes sent before the measured transfer (TCP and Yamux windows open up), and the write size. */
const RAW_WARMUP_BYTES = 16 * MiB
const RAW_CHUNK_BYTES = 1 * MiB
/** Range reads: how many, and how long each. */
const READS = 100
const READ_BYTES = 64 * KiB
/** A fetch or a read that takes longer is abandoned (a ban of every holder stalls a download for BAN_MS). */
const FETCH_TIMEOUT_MS = 120_000
const READ_TIMEOUT_MS = 30_000
/** tmpfs for run (g). */
const TMPFS = '/dev/shm'

const PEER_SCRIPT = fileURLToPath(new URL('./content-peer.ts', import.meta.url))
const PEER_READY_TIMEOUT_MS = 30_000
const PEER_STOP_TIMEOUT_MS = 10_000

/** Targets from the issue. */
const TARGET_VS_HELIA = 4
const TARGET_VS_RAW = 0.7
const TARGET_TTFB_P50_MS = 50

// ---------------------------------------------------------------------------------------------
// small helpers

// offsets come from their own stream, so the file bytes and the reads do not depend on each other
const rand = seeded(SEED ^ 0x5eed0ff5)

const progress = (line: string): void => { process.stderr.write(`[bench] ${line}\n`) }

/** Nearest-rank percentile of an unsorted sample. */
function percentile (values: number[], p: number): number {
  if (values.length === 0) return NaN
  const sorted = [...values].sort((a, b) => a - b)
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(p / 100 * sorted.length)))
  return sorted[rank - 1]
}

function median (values: number[]): number {
  const v = values.filter(x => Number.isFinite(x)).sort((a, b) => a - b)
  if (v.length === 0) return NaN
  const mid = v.length >> 1
  return v.length % 2 === 1 ? v[mid] : (v[mid - 1] + v[mid]) / 2
}

const fmt = (v: number, digits = 1): string => Number.isFinite(v) ? v.toFixed(digits) : 'n/a'
const mibps = (bytes: number, ms: number): number => bytes / MiB / (ms / 1000)

/** `count` read offsets, each READ_BYTES inside its own leaf, no two in the same leaf. */
function readOffsets (count: number): number[] {
  const leaves = Array.from({ length: LEAVES }, (_, i) => i)
  for (let i = leaves.length - 1; i > 0; i--) {
    const j = rand.int(i + 1);
    [leaves[i], leaves[j]] = [leaves[j], leaves[i]]
  }
  return leaves.slice(0, count).map(leaf => leaf * MiB + rand.int(MiB - READ_BYTES + 1))
}

// ---------------------------------------------------------------------------------------------
// peers in child processes

const live = new Set<Peer>()

class Peer {
  readonly name: string
  readonly peerId: string
  readonly addrs: string[]
  private readonly child: ChildProcess
  private nextId = 1
  private readonly pending = new Map<number, { resolve: (v: unknown) => void, reject: (e: Error) => void }>()
  private readonly exited: Promise<void>

  private constructor (name: string, child: ChildProcess, ready: Ready, exited: Promise<void>) {
    this.name = name
    this.child = child
    this.peerId = ready.peerId
    this.addrs = ready.addrs
    this.exited = exited
    child.on('message', (msg: Reply) => {
      const p = this.pending.get(msg.id)
      if (p == null) return
      this.pending.delete(msg.id)
      if (msg.ok) p.resolve(msg.result)
      else p.reject(new Error(`${name}: ${msg.error}`))
    })
    void exited.then(() => {
      for (const p of this.pending.values()) p.reject(new Error(`${name} exited`))
      this.pending.clear()
      live.delete(this)
    })
  }

  /** Forks a peer process and waits for its node to start. */
  static async spawn (name: string, options: { profile?: boolean, tmpdir?: string } = {}): Promise<Peer> {
    const execArgv = [...process.execArgv]
    if (options.profile === true && PROFILE_DIR != null) execArgv.push('--cpu-prof', `--cpu-prof-dir=${PROFILE_DIR}`, `--cpu-prof-name=${name}.cpuprofile`)
    const env = options.tmpdir == null ? process.env : { ...process.env, TMPDIR: options.tmpdir }
    // the child's stdout goes to our stderr: stdout carries figures only
    const child = fork(PEER_SCRIPT, [name], { execPath: process.execPath, execArgv, env, stdio: ['ignore', 2, 2, 'ipc'] })
    const exited = new Promise<void>(resolve => { child.once('exit', () => { resolve() }) })
    const ready = await new Promise<Ready>((resolve, reject) => {
      const timer = setTimeout(() => { reject(new Error(`${name} not ready in ${PEER_READY_TIMEOUT_MS} ms`)) }, PEER_READY_TIMEOUT_MS)
      child.once('message', (msg: Ready) => { clearTimeout(timer); resolve(msg) })
      void exited.then(() => { clearTimeout(timer); reject(new Error(`${name} exited before it was ready`)) })
    }).catch(err => { child.kill('SIGKILL'); throw err })
    const peer = new Peer(name, child, ready, exited)
    live.add(peer)
    return peer
  }

  async call<K extends keyof PeerOps> (op: K, args: PeerOps[K]['args']): Promise<PeerOps[K]['result']> {
    const id = this.nextId++
    const reply = new Promise<unknown>((resolve, reject) => { this.pending.set(id, { resolve, reject }) })
    this.child.send({ id, op, ...args } as Request)
    return await reply as PeerOps[K]['result']
  }

  /** Asks the peer to stop and clean up; kills it if it does not exit in time. */
  async stop (): Promise<void> {
    if (!live.has(this)) return
    const timer = setTimeout(() => { this.child.kill('SIGKILL') }, PEER_STOP_TIMEOUT_MS)
    await this.call('stop', {}).catch(() => {})
    await this.exited
    clearTimeout(timer)
  }

  /** SIGTERM: the peer stops its node and deletes its data dir on the way out. */
  kill (): void {
    this.child.kill('SIGTERM')
  }
}

// ---------------------------------------------------------------------------------------------
// the runs

interface Reads { ttfbMs: number[], readMs: number[] }

interface Figures {
  addMs: number[]
  raw: Array<{ ms: number, receiverCpuMs: number, senderCpuMs: number }>
  one: Array<FetchResult & { seederCpuMs: number }>
  four: Array<FetchResult & { sentBytes: number[], seederCpuMs: number }>
  tmpfs: Array<FetchResult & { seederCpuMs: number }>
  inProcess: Array<{ ms: number, cpuMs: number }>
  /** (h): one peer's whole-file reads over HTTP, as a CAR and as raw bytes. */
  gateway: Array<{ carMs: number, carBytes: number, contentMs: number }>
  helia: number[]
  /** (h): MiB/s of a Helia downloader fetching over bitswap from us. */
  bitswap: number[]
  heliaCid?: string
  ttfb1?: Reads
  ttfb4?: Reads
  failures: string[]
}

function describeFetch (label: string, r: FetchResult & { seederCpuMs: number }): void {
  progress(`${label}: ${fmt(mibps(SIZE, r.ms))} MiB/s (${fmt(r.ms / 1000, 2)} s, ${r.fetchedBlocks} blocks fetched, ${r.localBlocks}/${r.blocks} leaves held, ` +
    `${fmt(r.received / MiB)} MiB received, ${fmt(r.wasted / MiB)} MiB duplicate, ${r.rejected} peers rejected, CPU ${fmt(r.cpuMs)} ms (seeders ${fmt(r.seederCpuMs)} ms), ` +
    `time in Blockstore.put ${fmt(r.putMs / r.puts, 2)} ms per block)`)
}

async function seed (): Promise<{ seeders: Peer[], cid: string, addMs: number[] }> {
  progress(`starting ${SEEDERS} seeders; each adds the same ${SIZE_MIB} MiB (seed ${SEED})`)
  const seeders = await Promise.all(Array.from({ length: SEEDERS }, async (_, i) => Peer.spawn(`seeder${i + 1}`)))
  const added = await Promise.all(seeders.map(async s => s.call('add', { seed: SEED, bytes: SIZE })))
  const cids = new Set(added.map(a => a.cid))
  if (cids.size !== 1) throw new Error(`seeders disagree on the CID: ${[...cids].join(' ')}`)
  const cid = added[0].cid
  progress(`  cid ${cid}, ${added[0].blocks} blocks; add took ${added.map(a => fmt(a.ms / 1000, 2)).join(' / ')} s`)
  return { seeders, cid, addMs: added.map(a => a.ms) }
}

/** `d` fetches the file; with the seeders' CPU time and bytes written to sockets meanwhile. */
async function fetchFrom (seeders: Peer[], d: Peer, cid: string): Promise<FetchResult & { seederCpuMs: number, sentBytes: number[] }> {
  const before = await Promise.all(seeders.map(async s => s.call('stats', {})))
  const r = await d.call('fetch', { cid, timeoutMs: FETCH_TIMEOUT_MS })
  const after = await Promise.all(seeders.map(async s => s.call('stats', {})))
  return {
    ...r,
    seederCpuMs: after.reduce((n, a, i) => n + a.cpuMs - before[i].cpuMs, 0),
    sentBytes: after.map((a, i) => a.socketBytesWritten - before[i].socketBytesWritten)
  }
}

/** (a) and (b): the raw stream, then our fetch, over the same connection. */
async function oneToOne (seeder: Peer, cid: string, run: number, f: Figures): Promise<void> {
  const d = await Peer.spawn(`downloader-1to1-${run}`, { profile: true })
  try {
    await d.call('connect', { addr: seeder.addrs[0] })
    await seeder.call('rawSend', { peer: d.peerId, bytes: RAW_WARMUP_BYTES, chunk: RAW_CHUNK_BYTES })
    await d.call('rawResult', {})
    const sent = await seeder.call('rawSend', { peer: d.peerId, bytes: SIZE, chunk: RAW_CHUNK_BYTES })
    const got = await d.call('rawResult', {})
    f.raw.push({ ms: sent.ms, receiverCpuMs: got.cpuMs, senderCpuMs: sent.cpuMs })
    progress(`run ${run} raw stream ${seeder.name} -> ${d.name}: ${fmt(mibps(SIZE, sent.ms))} MiB/s (receiver CPU ${fmt(got.cpuMs)} ms, sender CPU ${fmt(sent.cpuMs)} ms)`)
    const r = await fetchFrom([seeder], d, cid)
    f.one.push(r)
    describeFetch(`run ${run} ours 1 -> 1`, r)
  } catch (err) {
    f.failures.push(`1 -> 1 run ${run}: ${(err as Error).message.split('\n')[0]}`)
    progress(`run ${run} 1 -> 1 failed: ${(err as Error).message}`)
  } finally {
    await d.stop()
  }
}

/** (g): 1 -> 1 into a data dir on tmpfs. */
async function oneToOneTmpfs (seeder: Peer, cid: string, run: number, f: Figures): Promise<void> {
  const d = await Peer.spawn(`downloader-tmpfs-${run}`, { profile: true, tmpdir: TMPFS })
  try {
    await d.call('connect', { addr: seeder.addrs[0] })
    const r = await fetchFrom([seeder], d, cid)
    f.tmpfs.push(r)
    describeFetch(`run ${run} ours 1 -> 1 into ${TMPFS}`, r)
  } catch (err) {
    f.failures.push(`1 -> 1 tmpfs run ${run}: ${(err as Error).message.split('\n')[0]}`)
  } finally {
    await d.stop()
  }
}

/** (c): four seeders to one fresh downloader. */
async function fourToOne (seeders: Peer[], cid: string, run: number, f: Figures): Promise<void> {
  const d = await Peer.spawn(`downloader-4to1-${run}`, { profile: true })
  try {
    for (const s of seeders) await d.call('connect', { addr: s.addrs[0] })
    const r = await fetchFrom(seeders, d, cid)
    f.four.push(r)
    describeFetch(`run ${run} ours ${seeders.length} -> 1`, r)
    progress(`  bytes sent per seeder: ${r.sentBytes.map(b => `${fmt(b / MiB)} MiB`).join(' / ')}`)
  } catch (err) {
    f.failures.push(`${seeders.length} -> 1 run ${run}: ${(err as Error).message.split('\n')[0]}`)
    progress(`run ${run} ${seeders.length} -> 1 failed: ${(err as Error).message}`)
  } finally {
    await d.stop()
  }
}

/** (d): range reads by a fresh reader connected to `seeders`. */
async function rangeReads (seeders: Peer[], cid: string, offsets: number[], f: Figures): Promise<Reads | undefined> {
  const r = await Peer.spawn(`reader-${seeders.length}`, { profile: true })
  try {
    for (const s of seeders) await r.call('connect', { addr: s.addrs[0] })
    progress(`range reads: ${r.name} reads ${offsets.length} x ${READ_BYTES / KiB} KiB at random offsets, connected to ${seeders.length} seeder(s)`)
    const t = await r.call('ttfb', { cid, offsets, length: READ_BYTES, timeoutMs: READ_TIMEOUT_MS })
    progress(`  first byte p50 ${fmt(percentile(t.ttfbMs, 50), 2)} ms, p99 ${fmt(percentile(t.ttfbMs, 99), 2)} ms, first read ${fmt(t.ttfbMs[0], 2)} ms; CPU ${fmt(t.cpuMs)} ms`)
    return t
  } catch (err) {
    f.failures.push(`range reads from ${seeders.length}: ${(err as Error).message.split('\n')[0]}`)
    return undefined
  } finally {
    await r.stop()
  }
}

/** (f): our 1 -> 1 with both nodes in this process, as the anchor runs; a fresh downloader per run. */
async function inProcess (bytes: Uint8Array, f: Figures): Promise<void> {
  progress(`ours 1 -> 1 in one process: ${RUNS} x ${SIZE_MIB} MiB`)
  const dirs: string[] = []
  const nodes: PeerverseNode[] = []
  const start = async (): Promise<PeerverseNode> => {
    const dir = await mkdtemp(join(tmpdir(), 'peerverse-bench-content-'))
    dirs.push(dir)
    const config: NodeConfig = mergeConfig(defaultConfig(dir), { discovery: { mdns: false }, listen: ['/ip4/127.0.0.1/tcp/0'], api: false, dht: { mode: 'server' }, relay: { server: false } })
    const node = await createNode(config)
    nodes.push(node)
    await node.start()
    return node
  }
  try {
    const a = await start()
    const { cid } = await a.content.add(bytes)
    for (let run = 0; run < RUNS; run++) {
      const b = await start()
      await b.connect(a.addresses()[0])
      const cpu = process.cpuUsage()
      const t0 = performance.now()
      await b.content.fetch(parseCid(cid.toString()), { signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) })
      const ms = performance.now() - t0
      const c = process.cpuUsage(cpu)
      f.inProcess.push({ ms, cpuMs: (c.user + c.system) / 1000 })
      progress(`run ${run} ours 1 -> 1 in one process: ${fmt(mibps(SIZE, ms))} MiB/s (CPU of both peers ${fmt((c.user + c.system) / 1000)} ms)`)
      await b.stop()
    }
  } catch (err) {
    f.failures.push(`1 -> 1 in one process: ${(err as Error).message.split('\n')[0]}`)
  } finally {
    await Promise.allSettled(nodes.map(async n => n.stop()))
    await Promise.all(dirs.map(async d => rm(d, { recursive: true, force: true })))
  }
}

/** Reads a whole HTTP answer; its byte count. */
async function drain (url: string, headers: Record<string, string>): Promise<number> {
  const res = await fetch(url, { headers, signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) })
  if (!res.ok || res.body == null) throw new Error(`${url}: HTTP ${res.status}`)
  let n = 0
  for await (const chunk of res.body) n += (chunk as Uint8Array).length
  return n
}

/** (h): the gateway's CAR against GET /content for the same file on the same peer (in this process, with its API). */
async function gatewayVsContent (bytes: Uint8Array, f: Figures): Promise<void> {
  progress(`gateway CAR against the raw stream: ${RUNS} x ${SIZE_MIB} MiB each, one peer over HTTP`)
  const dir = await mkdtemp(join(tmpdir(), 'peerverse-bench-gateway-'))
  let node: PeerverseNode | undefined
  let api: ApiServer | undefined
  try {
    node = await createNode(mergeConfig(defaultConfig(dir), { discovery: { mdns: false }, listen: ['/ip4/127.0.0.1/tcp/0'], api: false, dht: { mode: 'server' }, relay: { server: false } }))
    await node.start()
    const token = 'bench-gateway-token'
    api = new ApiServer(node, { host: '127.0.0.1', port: 0, token, webRoot: null })
    await api.start()
    const { cid } = await node.content.add(bytes)
    const auth = { authorization: `Bearer ${token}` }
    for (let run = 0; run < RUNS; run++) {
      let t0 = performance.now()
      const got = await drain(`${api.url}/content/${cid.toString()}`, auth)
      const contentMs = performance.now() - t0
      if (got !== SIZE) throw new Error(`GET /content gave ${got} bytes, not ${SIZE}`)
      t0 = performance.now()
      const carBytes = await drain(`${api.url}/ipfs/${cid.toString()}?format=car`, { ...auth, accept: 'application/vnd.ipld.car' })
      const carMs = performance.now() - t0
      f.gateway.push({ carMs, carBytes, contentMs })
      progress(`run ${run} gateway CAR ${fmt(mibps(carBytes, carMs))} MiB/s, raw stream ${fmt(mibps(SIZE, contentMs))} MiB/s`)
    }
  } catch (err) {
    f.failures.push(`gateway: ${(err as Error).message.split('\n')[0]}`)
  } finally {
    await api?.stop().catch(() => {})
    await node?.stop().catch(() => {})
    await rm(dir, { recursive: true, force: true })
  }
}

/** (i): ours serving Bitswap to a stock Helia downloader, both in this process; a fresh Helia node per run. */
async function bitswapServing (bytes: Uint8Array, f: Figures): Promise<void> {
  progress(`ours serving bitswap to a helia downloader: ${RUNS} x ${SIZE_MIB} MiB`)
  const dir = await mkdtemp(join(tmpdir(), 'peerverse-bench-bitswap-'))
  let node: PeerverseNode | undefined
  try {
    node = await createNode(mergeConfig(defaultConfig(dir), { discovery: { mdns: false }, listen: ['/ip4/127.0.0.1/tcp/0'], api: false, dht: { mode: 'server' }, relay: { server: false } }))
    await node.start()
    const { cid } = await node.content.add(bytes)
    for (let run = 0; run < RUNS; run++) {
      const r = await heliaFetchFrom(node.net.getMultiaddrs(), node.net.peerId.toString(), cid.toString(), bytes)
      f.bitswap.push(r.mibPerSecond)
      progress(`run ${run} ours serving bitswap to helia: ${fmt(r.mibPerSecond)} MiB/s`)
    }
  } catch (err) {
    f.failures.push(`ours serving bitswap: ${(err as Error).message.split('\n')[0]}`)
  } finally {
    await node?.stop().catch(() => {})
    await rm(dir, { recursive: true, force: true })
  }
}

// ---------------------------------------------------------------------------------------------

function table (head: string[], rows: string[][]): void {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map(r => r[i].length)))
  const line = (cells: string[]): string => cells.map((c, i) => i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i])).join(' | ')
  console.log('')
  console.log(line(head))
  console.log(widths.map(w => '-'.repeat(w)).join('-|-'))
  for (const r of rows) console.log(line(r))
}

/** (h)'s table: the gateway's CAR against the raw stream. */
function gatewayTable (f: Figures): void {
  if (f.gateway.length === 0) return
  const range = (r: number[]): string => `${fmt(Math.min(...r), 0)}-${fmt(Math.max(...r), 0)}`
  const car = f.gateway.map(g => mibps(g.carBytes, g.carMs))
  const raw = f.gateway.map(g => mibps(SIZE, g.contentMs))
  table([`${SIZE_MIB} MiB over HTTP from one peer, median of ${f.gateway.length}`, 'MiB/s', 'range', 'x raw stream'], [
    ['raw stream: GET /content/CID', fmt(median(raw)), range(raw), '1.00'],
    ['gateway CAR: GET /ipfs/CID?format=car', fmt(median(car)), range(car), fmt(median(car) / median(raw), 2)]
  ])
}

function report (f: Figures): void {
  const rates = (ms: number[]): number[] => ms.map(m => mibps(SIZE, m))
  const range = (r: number[]): string => r.length === 0 ? 'n/a' : `${fmt(Math.min(...r), 0)}-${fmt(Math.max(...r), 0)}`
  const helia = median(f.helia)
  const raw = median(rates(f.raw.map(r => r.ms)))
  const perMiB = (ms: number[]): string => ms.length === 0 ? 'n/a' : fmt(median(ms) / SIZE_MIB, 2)
  const row = (label: string, r: number[], cpuMs: number[], seederCpuMs: number[]): string[] => {
    const m = median(r)
    return [label, fmt(m), range(r), fmt(m / helia, 2), fmt(m / raw, 3), perMiB(cpuMs), perMiB(seederCpuMs)]
  }
  const one = rates(f.one.map(r => r.ms))
  const four = rates(f.four.map(r => r.ms))
  const rows = [
    row('ours 1 -> 1', one, f.one.map(r => r.cpuMs), f.one.map(r => r.seederCpuMs)),
    row(`ours ${SEEDERS} -> 1`, four, f.four.map(r => r.cpuMs), f.four.map(r => r.seederCpuMs)),
    row('anchor: helia bitswap 1 -> 1 (one process)', f.helia, [], []),
    row('ceiling: raw libp2p stream 1 -> 1', rates(f.raw.map(r => r.ms)), f.raw.map(r => r.receiverCpuMs), f.raw.map(r => r.senderCpuMs)),
    row('ours 1 -> 1, both peers in one process', rates(f.inProcess.map(r => r.ms)), f.inProcess.map(r => r.cpuMs), []),
    row(`ours 1 -> 1, downloader data dir on ${TMPFS}`, rates(f.tmpfs.map(r => r.ms)), f.tmpfs.map(r => r.cpuMs), f.tmpfs.map(r => r.seederCpuMs)),
    row('ours serving bitswap to a helia downloader 1 -> 1 (one process)', f.bitswap, [], [])
  ]
  table([`${SIZE_MIB} MiB whole file, median of ${RUNS}`, 'MiB/s', 'range', 'x helia', 'x raw', 'CPU ms/MiB: downloader', 'seeder(s)'], rows)
  console.log('(CPU is user + system time of the process, all its threads; in one process the downloader column counts both peers)')

  if (f.four.length > 0) {
    const sent = f.four[0].sentBytes.map((_, i) => f.four.reduce((n, r) => n + r.sentBytes[i], 0))
    const total = sent.reduce((a, b) => a + b, 0)
    console.log(`\n${SEEDERS} -> 1: share of all bytes the seeders wrote to sockets, by seeder ${sent.map(b => `${fmt(b / total * 100)}%`).join(' / ')}; ` +
      `duplicate bytes ${f.four.map(r => fmt(r.wasted / MiB)).join(' / ')} MiB; peers rejected (banned) by the downloader ${f.four.map(r => r.rejected).join(' / ')}`)
  }

  const ttfbRow = (label: string, t?: Reads): string[] => t == null
    ? [label, 'n/a', 'n/a', 'n/a', 'n/a']
    : [label, fmt(percentile(t.ttfbMs, 50), 2), fmt(percentile(t.ttfbMs, 99), 2), fmt(t.ttfbMs[0], 2), fmt(percentile(t.readMs, 50), 2)]
  const reads = f.ttfb1?.ttfbMs.length ?? f.ttfb4?.ttfbMs.length ?? 0
  table([`first byte of a ${READ_BYTES / KiB} KiB read (ms, ${reads} reads)`, 'p50', 'p99', 'first read', 'whole read p50'], [
    ttfbRow('reader connected to 1 seeder', f.ttfb1),
    ttfbRow(`reader connected to ${SEEDERS} seeders`, f.ttfb4)
  ])

  gatewayTable(f)

  const met = (ok: boolean): string => ok ? 'met' : 'NOT met'
  const o = median(one)
  const p50 = f.ttfb1 == null ? NaN : percentile(f.ttfb1.ttfbMs, 50)
  console.log('')
  console.log('targets (ours 1 -> 1, reader connected to 1 seeder):')
  console.log(`  >= ${TARGET_VS_HELIA}x helia bitswap       ${fmt(o / helia, 2)}x     ${met(o / helia >= TARGET_VS_HELIA)}`)
  console.log(`  >= ${TARGET_VS_RAW * 100}% of the raw stream    ${fmt(o / raw * 100)}%    ${met(o / raw >= TARGET_VS_RAW)}`)
  console.log(`  first byte p50 < ${TARGET_TTFB_P50_MS} ms     ${fmt(p50, 2)} ms  ${met(p50 < TARGET_TTFB_P50_MS)}`)
  if (f.failures.length > 0) console.log(`\nfailed runs:\n${f.failures.map(x => `  ${x}`).join('\n')}`)
}

async function main (): Promise<void> {
  if (!Number.isInteger(SIZE_MIB) || SIZE_MIB < 2) throw new Error(`BENCH_MIB must be an integer of at least 2, got ${process.env.BENCH_MIB}`)
  if (!Number.isInteger(RUNS) || RUNS < 1) throw new Error(`BENCH_RUNS must be a positive integer, got ${process.env.BENCH_RUNS}`)
  const started = performance.now()
  console.log(`peerverse bench:content  seed ${SEED}  node ${process.version}  ${SIZE_MIB} MiB over loopback TCP  ${SEEDERS} seeders  ${RUNS} runs`)
  const f: Figures = { addMs: [], raw: [], one: [], four: [], tmpfs: [], inProcess: [], gateway: [], helia: [], bitswap: [], failures: [] }

  if (process.env.BENCH_ONLY === 'gateway') {
    // (h) alone: BENCH_ONLY=gateway.
    await gatewayVsContent(seededBytes(SIZE, SEED), f)
    gatewayTable(f)
    if (f.failures.length > 0) console.log(`\nfailed runs:\n${f.failures.map(x => `  ${x}`).join('\n')}`)
    return
  }

  const { seeders, cid, addMs } = await seed()
  f.addMs = addMs
  try {
    for (let run = 0; run < RUNS; run++) await oneToOne(seeders[0], cid, run, f)
    const reads = Math.min(READS, LEAVES)
    f.ttfb1 = await rangeReads([seeders[0]], cid, readOffsets(reads), f)
    if (existsSync(TMPFS)) for (let run = 0; run < RUNS; run++) await oneToOneTmpfs(seeders[0], cid, run, f)
    for (let run = 0; run < RUNS; run++) await fourToOne(seeders, cid, run, f)
    f.ttfb4 = await rangeReads(seeders, cid, readOffsets(reads), f)
  } finally {
    progress('stopping the seeders')
    await Promise.all(seeders.map(async p => { await p.stop() }))
  }

  const bytes = seededBytes(SIZE, SEED)
  await inProcess(bytes, f)
  await gatewayVsContent(bytes, f)

  progress(`anchor: helia bitswap, ${RUNS} x ${SIZE_MIB} MiB between two Helia nodes in this process`)
  for (let run = 0; run < RUNS; run++) {
    const h = await heliaBitswapFetch(bytes)
    f.helia.push(h.mibPerSecond)
    f.heliaCid = h.cid
    progress(`run ${run} helia: ${fmt(h.mibPerSecond)} MiB/s`)
  }

  await bitswapServing(bytes, f)

  report(f)
  console.log(`\nadd on each seeder: ${f.addMs.map(ms => fmt(ms / 1000, 2)).join(' / ')} s; helia's root CID ${f.heliaCid === cid ? 'equals' : 'DIFFERS from'} ours (${cid})`)
  console.log(`total ${fmt((performance.now() - started) / 1000)} s`)
}

const killAll = (): void => { for (const p of live) p.kill() }
process.on('SIGINT', () => { killAll(); process.exit(130) })
process.on('SIGTERM', () => { killAll(); process.exit(143) })
try {
  await main()
} catch (err) {
  killAll()
  throw err
}
