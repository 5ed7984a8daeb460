/**
 * Space benchmark: presence in one shared space (src/space) with many members moving at once, on
 * one machine, against the raw transport's one-way latency measured in the same run. It prints
 * figures and asserts nothing.
 *
 * Each run puts BENCH_SPACE_MEMBERS (default 16) members, every one a full PeerverseNode on
 * loopback TCP, into one public space, spread over BENCH_SPACE_WORKERS (default 4) worker
 * processes (bench/space-worker.ts). This process runs one more node that creates the space and is
 * every member's bootstrap; it leaves the space once every member sees all the others, so the
 * space's gossip runs over the members alone. All nodes share one genesis file naming a validator
 * nobody runs, so every ledger follows an idle chain. Members start at seeded uniform positions on
 * a square grid sized so each has on average ~9 others within AOI_RADIUS (area = N·π·32²/9,
 * before edge effects) and, once all are in, walk a seeded random walk at 1.5 m/s, calling move()
 * 20 times a second. After BENCH_SPACE_WARMUP (default 5) s the window of BENCH_SPACE_SECONDS
 * (default 20) s opens. Per run it prints:
 *
 * - frame latency p50/p99/max: a presence frame's `time` (the sender's clock as it built the frame)
 *   to the receiver's 'space:presence' event (all processes read one clock), for moving frames;
 *   and move -> seen, from the move() call to that event, which adds the wait for the service's
 *   next 20 Hz tick (see bench/space-worker.ts for how both are taken);
 * - the anchor: libp2p ping (a fresh stream on a live connection) from two members of each worker
 *   to random connected members during the window, RTT/2; the ratio is ours over the anchor;
 * - bytes per member per second: what each worker read from and wrote to its TCP sockets over the
 *   window, divided by its members, beside the presence frame payload and /proc/self/io rchar and
 *   wchar (which also count LevelDB's file I/O: the peer store is written on every stream);
 * - CPU per member (% of one core), the workers' event-loop utilisation and delay, and how busy
 *   the whole machine was (it may be shared);
 * - near members per member: nearCount() averaged over once-a-second probes, and the count
 *   within AOI_RADIUS from the members' true positions; frames seen per member per second.
 *
 * Why 16 and not the issue's 100: every member here is a whole peer (DHT, gossip mesh, identify,
 * ledger follower, LevelDB peer store), about a tenth of a core even at rest, and all of them share
 * this machine's 2 cores; past ~16 the event loops saturate and the figures measure the queueing,
 * not the protocol (a 100-member run: 69 of 100 joined in 8 minutes, frames p99 over 5 s). On a
 * machine that holds it, BENCH_SPACE_MEMBERS=100 gives the issue's figure.
 *
 * BENCH_SPACE_RUNS (default `on:N,on:N/2,off:N`) lists the runs: interest management on or off and
 * the member count; `off` sends every frame to the whole space over gossip and is expected to
 * saturate, so its window is capped at BENCH_SPACE_OFF_SECONDS (default 10) and ends early when a
 * worker stops answering or grows past RSS_LIMIT. BENCH_SEED (default 1) seeds positions and
 * walks. BENCH_SPACE_START_DEADLINE (default 300) s bounds how long a run starts members (a
 * saturated machine starts each ever slower); members not started by then are left out and the
 * figures say so. BENCH_SPACE_PROFILE=<dir> writes a CPU profile of worker 0 over each window.
 * Results go to stdout, progress to stderr; data dirs are temporary and removed at the end.
 */
import { fork, type ChildProcess } from 'node:child_process'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { setTimeout as delay } from 'node:timers/promises'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { didFromPublicKey } from '../src/identity/did.ts'
import { ed25519KeyFromSeed } from '../src/identity/ed25519.ts'
import { devnetGenesis, genesisJson } from '../src/ledger/genesis.ts'
import { defaultConfig, mergeConfig } from '../src/node/config.ts'
import { createNode, type PeerverseNode } from '../src/node/node.ts'
import { AOI_RADIUS } from '../src/space/interest.ts'
import { MAX_PRESENCE_HZ } from '../src/space/index.ts'
import { seeded, printSummary, type SummaryRow } from './lib.ts'
import { type MemberInit, type Pairs, type Probe, type Reply, type Request, type WindowStats, type WorkerInit, type WorkerOps } from './space-worker.ts'

const SEED = Number(process.env.BENCH_SEED ?? 1)
const MEMBERS = Number(process.env.BENCH_SPACE_MEMBERS ?? 16)
const SECONDS = Number(process.env.BENCH_SPACE_SECONDS ?? 20)
const OFF_SECONDS = Number(process.env.BENCH_SPACE_OFF_SECONDS ?? Math.min(SECONDS, 10))
const WARMUP_S = Number(process.env.BENCH_SPACE_WARMUP ?? 5)
const WORKERS = Number(process.env.BENCH_SPACE_WORKERS ?? 4)
const PROFILE_DIR = process.env.BENCH_SPACE_PROFILE
/** Members not started this long after a run begins are left out (a saturated machine starts them ever slower). */
const START_DEADLINE_S = Number(process.env.BENCH_SPACE_START_DEADLINE ?? 300)
/** A start under way at the deadline still finishes: node start, up to a minute to see the owner, three join attempts. */
const INIT_TIMEOUT_MS = START_DEADLINE_S * 1000 + 400_000

/** Average members within AOI_RADIUS of each member, before edge effects; sets the grid's side. */
const DENSITY_NEIGHBOURS = 9
const CELL_M = 16
/** Every member must see all others within this long of the last join. */
const ROSTER_DEADLINE_MS = 120_000
/** A worker that does not answer a probe this fast, or grows past RSS_LIMIT, has fallen over. */
const PROBE_TIMEOUT_MS = 10_000
const RSS_LIMIT = 3 * 1024 ** 3
const WORKER_READY_TIMEOUT_MS = 30_000
const END_TIMEOUT_MS = 120_000
const STOP_TIMEOUT_MS = 20_000
/** Targets from the issue (printed beside the figures, never asserted). */
const TARGET_P99_MS = 150

const WORKER_SCRIPT = fileURLToPath(new URL('./space-worker.ts', import.meta.url))

// ---------------------------------------------------------------------------------------------
// small helpers

const progress = (line: string): void => { process.stderr.write(`[bench] ${line}\n`) }
/** Aborted on SIGINT/SIGTERM: sleeps end at once and no further run starts. */
const interrupted = new AbortController()
const sleep = async (ms: number): Promise<void> => {
  if (interrupted.signal.aborted) throw new Error('interrupted')
  await delay(ms, undefined, { signal: interrupted.signal }).catch(() => { throw new Error('interrupted') })
}
const fmt = (v: number, digits = 1): string => Number.isFinite(v) ? v.toFixed(digits) : 'n/a'
const kb = (bytes: number): string => fmt(bytes / 1000, 1)
const mean = (values: number[]): number => values.length === 0 ? NaN : values.reduce((a, b) => a + b, 0) / values.length

/** A merged histogram of integer milliseconds. */
class Merged {
  private readonly counts = new Map<number, number>()
  n = 0
  add (pairs: Pairs): void {
    for (const [k, c] of pairs) { this.counts.set(k, (this.counts.get(k) ?? 0) + c); this.n += c }
  }

  /** Nearest-rank percentile. */
  percentile (p: number): number {
    if (this.n === 0) return NaN
    const rank = Math.min(this.n, Math.max(1, Math.ceil(p / 100 * this.n)))
    let seen = 0
    for (const k of [...this.counts.keys()].sort((a, b) => a - b)) {
      seen += this.counts.get(k)!
      if (seen >= rank) return k
    }
    return NaN
  }

  get max (): number { return this.n === 0 ? NaN : Math.max(...this.counts.keys()) }
}

async function machineCpu (): Promise<{ busy: number, total: number }> {
  const line = (await readFile('/proc/stat', 'utf8')).split('\n')[0]
  const v = line.trim().split(/\s+/).slice(1).map(Number)
  const total = v.reduce((a, b) => a + b, 0)
  return { busy: total - v[3] - (v[4] ?? 0), total }
}

/** Grid side (m) for `n` members at DENSITY_NEIGHBOURS within AOI_RADIUS, and the average within it counting edges. */
function gridFor (n: number): { side: number, expected: number } {
  const side = Math.ceil(Math.sqrt(n * Math.PI * AOI_RADIUS ** 2 / DENSITY_NEIGHBOURS))
  const r = AOI_RADIUS / side
  // Probability that two uniform points in a unit square are within r (r <= 1).
  const p = Math.PI * r ** 2 - 8 / 3 * r ** 3 + r ** 4 / 2
  return { side, expected: (n - 1) * p }
}

/** Members within AOI_RADIUS of each member, averaged (true positions). */
function withinRadius (positions: Array<[number, number]>): number {
  let sum = 0
  for (let i = 0; i < positions.length; i++) {
    for (let j = 0; j < positions.length; j++) {
      if (i !== j && Math.hypot(positions[i][0] - positions[j][0], positions[i][1] - positions[j][1]) <= AOI_RADIUS) sum++
    }
  }
  return positions.length === 0 ? NaN : sum / positions.length
}

type Row = SummaryRow
const summary: Row[] = []
function result (row: Row): void {
  summary.push(row)
  const extra = row.anchor == null ? '' : `   anchor ${row.anchor}   ratio ${row.ratio ?? ''}`
  console.log(`${row.figure}: ${row.ours}${extra}`)
}

// ---------------------------------------------------------------------------------------------
// workers

const live = new Set<Worker>()

class Worker {
  readonly name: string
  private readonly child: ChildProcess
  private nextId = 1
  private readonly pending = new Map<number, { resolve: (v: unknown) => void, reject: (e: Error) => void }>()
  readonly exited: Promise<void>

  private constructor (name: string, child: ChildProcess, exited: Promise<void>) {
    this.name = name
    this.child = child
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

  static async spawn (name: string): Promise<Worker> {
    // The worker's stdout goes to our stderr: stdout carries figures only.
    const child = fork(WORKER_SCRIPT, [name], { execPath: process.execPath, execArgv: process.execArgv, stdio: ['ignore', 2, 2, 'ipc'] })
    const exited = new Promise<void>(resolve => { child.once('exit', () => { resolve() }) })
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => { reject(new Error(`${name} not ready in ${WORKER_READY_TIMEOUT_MS} ms`)) }, WORKER_READY_TIMEOUT_MS)
      child.once('message', () => { clearTimeout(timer); resolve() })
      void exited.then(() => { clearTimeout(timer); reject(new Error(`${name} exited before it was ready`)) })
    }).catch(err => { child.kill('SIGKILL'); throw err })
    const w = new Worker(name, child, exited)
    live.add(w)
    return w
  }

  async call<K extends keyof WorkerOps> (op: K, args: WorkerOps[K]['args'], timeoutMs = 60_000): Promise<WorkerOps[K]['result']> {
    const id = this.nextId++
    let timer: ReturnType<typeof setTimeout> | undefined
    const reply = new Promise<unknown>((resolve, reject) => {
      this.pending.set(id, { resolve, reject })
      timer = setTimeout(() => {
        this.pending.delete(id)
        reject(new Error(`${this.name}: no answer to ${op} in ${timeoutMs} ms`))
      }, timeoutMs)
    })
    this.child.send({ id, op, ...args } as Request)
    try {
      return await reply as WorkerOps[K]['result']
    } finally {
      clearTimeout(timer)
    }
  }

  /** Asks the worker to stop its nodes and clean up; kills it if it does not exit in time. */
  async stop (): Promise<void> {
    if (!live.has(this)) return
    const timer = setTimeout(() => { this.child.kill('SIGKILL') }, STOP_TIMEOUT_MS)
    await this.call('stop', {}, STOP_TIMEOUT_MS).catch(() => {})
    await this.exited
    clearTimeout(timer)
  }
}

// ---------------------------------------------------------------------------------------------
// one run

interface RunSpec { interest: boolean, members: number }

interface RunResult {
  label: string
  spec: RunSpec
  joined: number
  bytesInPerMember: number
  nearCount: number
  within: number
}

const owners: PeerverseNode[] = []

async function startOwner (dir: string, genesis: string, interest: boolean): Promise<PeerverseNode> {
  const node = await createNode(mergeConfig(defaultConfig(dir), {
    discovery: { mdns: false },
    listen: ['/ip4/127.0.0.1/tcp/0'],
    api: false,
    dht: { mode: 'server' },
    relay: { server: false },
    space: { interest },
    ledger: { genesis }
  }))
  owners.push(node)
  await node.start()
  return node
}

async function run (spec: RunSpec, index: number, root: string, genesis: string): Promise<RunResult> {
  const label = `${spec.interest ? 'interest on' : 'interest off'}, N=${spec.members}`
  const { side, expected } = gridFor(spec.members)
  const windowS = spec.interest ? SECONDS : OFF_SECONDS
  const dir = await mkdtemp(join(root, `run${index}-`))
  console.log(`\n== run ${index + 1}: ${label}; grid ${side} x ${side} m (expected ${fmt(expected)} members within ${AOI_RADIUS} m, edges included); ${WORKERS} workers; window ${windowS} s after ${WARMUP_S} s warm-up`)

  const owner = await startOwner(join(dir, 'owner'), genesis, spec.interest)
  const workers: Worker[] = []
  try {
    const space = await owner.space.create({ name: `bench ${label}`, grid: { width: side, depth: side, cell: CELL_M } })
    const addr = owner.addresses().find(a => a.includes('/tcp/'))!
    const bootstrap = addr.includes('/p2p/') ? addr : `${addr}/p2p/${owner.peerId}`

    const rand = seeded(SEED * 1000 + index)
    const specs: MemberInit[] = Array.from({ length: spec.members }, () => ({
      x: rand() * side, z: rand() * side, heading: rand() * 2 * Math.PI, seed: rand.word()
    }))
    const k = Math.min(WORKERS, spec.members)
    for (let w = 0; w < k; w++) workers.push(await Worker.spawn(`run${index}-w${w}`))

    progress(`${label}: starting ${spec.members} members in ${k} workers`)
    const t0 = performance.now()
    const inits = await Promise.all(workers.map(async (w, i) => {
      const init: WorkerInit = {
        index: i,
        dir: join(dir, `w${i}`),
        space: space.id,
        bootstrap,
        owner: owner.peerId,
        genesis,
        interest: spec.interest,
        grid: { width: side, depth: side },
        members: specs.filter((_, m) => m % k === i),
        startDeadlineMs: START_DEADLINE_S * 1000,
        profile: PROFILE_DIR != null && i === 0 ? join(PROFILE_DIR, `run${index + 1}-${spec.interest ? 'on' : 'off'}-${spec.members}-w0.cpuprofile`) : undefined
      }
      return await w.call('init', { init }, INIT_TIMEOUT_MS)
    }))
    const startS = (performance.now() - t0) / 1000
    const members = inits.flatMap(r => r.members)
    const failed = inits.flatMap(r => r.failed)
    for (const f of failed) progress(`${label}: ${f}`)
    progress(`${label}: ${members.length} members joined in ${fmt(startS)} s`)

    // Every member must see every other before the walk starts.
    const dids = members.map(m => m.did)
    const t1 = performance.now()
    let seen: number[] = []
    while (true) {
      seen = (await Promise.all(workers.map(async w => await w.call('roster', { dids })))).flatMap(r => r.seen)
      if (seen.every(s => s >= members.length - 1) || performance.now() - t1 > ROSTER_DEADLINE_MS) break
      await sleep(1000)
    }
    const rosterS = (performance.now() - t1) / 1000
    const complete = seen.every(s => s >= members.length - 1)
    progress(`${label}: rosters ${complete ? 'complete' : 'INCOMPLETE'} after ${fmt(rosterS)} s (min ${Math.min(...seen)} of ${members.length - 1} others)`)
    console.log(`setup: ${members.length}/${spec.members} members joined in ${fmt(startS)} s${failed.length > 0 ? ` (${failed.length} failed)` : ''}; every member saw all ${members.length - 1} others after ${fmt(rosterS)} s more${complete ? '' : ` - NOT REACHED: min ${Math.min(...seen)}, mean ${fmt(mean(seen))}`}`)

    // The creator leaves: from here the space's gossip runs over the members alone.
    await owner.space.leave(space.id)

    await Promise.all(workers.map(async w => await w.call('go', { peers: members.map(m => m.peerId) })))
    progress(`${label}: walking; warm-up ${WARMUP_S} s`)
    await sleep(WARMUP_S * 1000)

    const cpu0 = await machineCpu()
    await Promise.all(workers.map(async w => await w.call('begin', {})))
    const w0 = performance.now()
    const probes: Probe[][] = []
    let fellOver: string | undefined
    while (performance.now() - w0 < windowS * 1000) {
      const tick = performance.now()
      try {
        const round = await Promise.all(workers.map(async w => await w.call('probe', {}, PROBE_TIMEOUT_MS)))
        probes.push(round)
        const big = round.findIndex(p => p.rssBytes > RSS_LIMIT)
        if (big >= 0) fellOver = `worker ${big} grew to ${fmt(round[big].rssBytes / 1024 ** 3, 2)} GiB RSS after ${fmt((performance.now() - w0) / 1000)} s`
      } catch (err) {
        fellOver = `${(err as Error).message} after ${fmt((performance.now() - w0) / 1000)} s`
      }
      if (fellOver != null) { progress(`${label}: fell over: ${fellOver}; ending the window`); break }
      await sleep(Math.max(0, 1000 - (performance.now() - tick)))
    }
    const ends = await Promise.all(workers.map(async w => await w.call('end', {}, END_TIMEOUT_MS).catch((err: Error) => { progress(`${label}: ${err.message}`); return undefined })))
    const cpu1 = await machineCpu()
    const stats = ends.filter((s): s is WindowStats => s != null)

    // -- figures
    const frame = new Merged()
    const move = new Merged()
    const beacon = new Merged()
    const ping = new Merged()
    for (const s of stats) { frame.add(s.frameLatency); move.add(s.moveLatency); beacon.add(s.beaconLatency); ping.add(s.pingRtt) }
    const n = stats.reduce((a, s) => a + s.members, 0)
    const perMember = (pick: (s: WindowStats) => number): number => stats.reduce((a, s) => a + pick(s) / s.seconds, 0) / n
    const seconds = mean(stats.map(s => s.seconds))
    const nearCount = mean(probes.flatMap(r => r.flatMap(p => p.nearCount)))
    const within = mean(probes.map(r => withinRadius(r.flatMap(p => p.positions))))
    const connections = mean(probes.flatMap(r => r.flatMap(p => p.connections)))
    const framesPerMember = perMember(s => s.frames)
    const movesPerMember = perMember(s => s.moves)
    const moveErrors = stats.reduce((a, s) => a + s.moveErrors, 0)
    const bytesIn = perMember(s => s.socketInBytes)
    const bytesOut = perMember(s => s.socketOutBytes)
    const rchar = perMember(s => s.rcharBytes)
    const wchar = perMember(s => s.wcharBytes)
    const payload = perMember(s => s.presenceBytes)
    const cpuPct = perMember(s => s.cpuMs / 10)
    const machineBusy = (cpu1.busy - cpu0.busy) / Math.max(1, cpu1.total - cpu0.total) * 100
    const pingHalf = { p50: ping.percentile(50) / 2, p99: ping.percentile(99) / 2 }
    const expectFrames = spec.interest ? MAX_PRESENCE_HZ * nearCount : MAX_PRESENCE_HZ * (n - 1)
    const instrumented = stats.every(s => s.frameSourceInstrumented)

    if (fellOver != null) console.log(`FELL OVER: ${fellOver}; the figures below cover the ${fmt(seconds)} s measured`)
    if (stats.length < workers.length) console.log(`LOST: ${workers.length - stats.length} of ${workers.length} workers did not report; figures cover ${n} members`)
    if (!instrumented) console.log('note: SpaceService#takePresence was not found, so beacons are not told apart from frames')
    const tag = `[${label}]`
    result({
      figure: `${tag} frame latency p50 / p99 (ms; frame time -> receiver's event; max ${fmt(frame.max, 0)}, ${frame.n} frames; target p99 < ${TARGET_P99_MS}) vs ping RTT/2 (${ping.n} pings${stats.some(s => s.pingErrors > 0) ? `, ${stats.reduce((a, s) => a + s.pingErrors, 0)} failed` : ''})`,
      ours: `${fmt(frame.percentile(50), 0)} / ${fmt(frame.percentile(99), 0)}`,
      anchor: `${fmt(pingHalf.p50)} / ${fmt(pingHalf.p99)}`,
      ratio: `${fmt(frame.percentile(50) / pingHalf.p50)} / ${fmt(frame.percentile(99) / pingHalf.p99)}`
    })
    result({
      figure: `${tag} move -> seen p50 / p99 (ms; move() call -> receiver's event, includes the wait for the next ${MAX_PRESENCE_HZ} Hz tick; max ${fmt(move.max, 0)}, ${move.n} moves)`,
      ours: `${fmt(move.percentile(50), 0)} / ${fmt(move.percentile(99), 0)}`,
      anchor: `${fmt(pingHalf.p50)} / ${fmt(pingHalf.p99)}`,
      ratio: `${fmt(move.percentile(50) / pingHalf.p50)} / ${fmt(move.percentile(99) / pingHalf.p99)}`
    })
    result({ figure: `${tag} beacon (gossip) latency p50 / p99 (ms; far members' signed beacons; ${beacon.n} beacons)`, ours: `${fmt(beacon.percentile(50), 0)} / ${fmt(beacon.percentile(99), 0)}` })
    result({
      figure: `${tag} frames seen per member per second (expected ~${fmt(expectFrames, 0)} = ${MAX_PRESENCE_HZ} Hz x ${spec.interest ? 'near members' : 'all others'}; moves made ${fmt(movesPerMember)}/s of ${MAX_PRESENCE_HZ}${moveErrors > 0 ? `, ${moveErrors} move() calls threw` : ''})`,
      ours: fmt(framesPerMember)
    })
    result({
      figure: `${tag} bytes received per member per second (kB/s on TCP sockets; sent ${kb(bytesOut)} kB/s; presence payload ${kb(payload)} kB/s; /proc/self/io rchar ${kb(rchar)}, wchar ${kb(wchar)} kB/s, LevelDB files included)`,
      ours: kb(bytesIn)
    })
    result({
      figure: `${tag} CPU per member (% of one core; workers' event loop ${stats.map(s => fmt(s.elu * 100, 0)).join('/')}% busy, delay p99 ${stats.map(s => fmt(s.loopP99Ms, 0)).join('/')} ms; machine ${fmt(machineBusy, 0)}% busy of all cores)`,
      ours: fmt(cpuPct, 2)
    })
    result({
      figure: `${tag} near members per member (nearCount(); within ${AOI_RADIUS} m by true position ${fmt(within)}; connections per member ${fmt(connections)})`,
      ours: spec.interest ? fmt(nearCount) : `n/a (off; within ${AOI_RADIUS} m ${fmt(within)})`
    })
    const rejected = new Map<string, number>()
    for (const s of stats) for (const [kind, c] of Object.entries(s.rejected)) rejected.set(kind, (rejected.get(kind) ?? 0) + c)
    if (rejected.size > 0) console.log(`${tag} rejections in the window: ${[...rejected].map(([k, c]) => `${k} x${c}`).join(', ')}`)
    return { label, spec, joined: members.length, bytesInPerMember: bytesIn, nearCount, within }
  } finally {
    progress(`${label}: stopping`)
    await Promise.all(workers.map(async w => { await w.stop() }))
    await owner.stop().catch(() => {})
    owners.splice(owners.indexOf(owner), 1)
    await rm(dir, { recursive: true, force: true }).catch(() => {})
  }
}

function parseRuns (): RunSpec[] {
  const text = process.env.BENCH_SPACE_RUNS ?? `on:${MEMBERS},on:${Math.max(2, Math.round(MEMBERS / 2))},off:${MEMBERS}`
  return text.split(',').map(s => s.trim()).filter(s => s !== '').map(s => {
    const [mode, count] = s.split(':')
    if (mode !== 'on' && mode !== 'off') throw new Error(`BENCH_SPACE_RUNS: ${s}: mode must be on or off`)
    const members = count == null ? MEMBERS : Number(count)
    if (!Number.isSafeInteger(members) || members < 2) throw new Error(`BENCH_SPACE_RUNS: ${s}: member count must be an integer >= 2`)
    return { interest: mode === 'on', members }
  })
}

// ---------------------------------------------------------------------------------------------

async function main (): Promise<void> {
  const started = performance.now()
  const runs = parseRuns()
  console.log(`peerverse bench:space  seed ${SEED}  node ${process.version}  runs ${runs.map(r => `${r.interest ? 'on' : 'off'}:${r.members}`).join(',')}  window ${SECONDS} s (off ${OFF_SECONDS} s)  workers ${WORKERS}`)
  const root = await mkdtemp(join(tmpdir(), 'peerverse-bench-space-'))
  if (PROFILE_DIR != null) await mkdir(PROFILE_DIR, { recursive: true })
  const results: RunResult[] = []
  const onSignal = (): void => {
    progress('interrupted: stopping')
    process.exitCode = 130
    interrupted.abort()
    // The run in progress fails on its next step; its workers stop now.
    for (const w of live) void w.stop()
    setTimeout(() => { process.exit(130) }, STOP_TIMEOUT_MS * 3).unref()
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    // One chain for every node, whose only validator nobody runs: every ledger is an idle follower.
    const nobody = ed25519KeyFromSeed(new Uint8Array(32).fill(7))
    const genesis = join(root, 'genesis.json')
    await writeFile(genesis, genesisJson(devnetGenesis([didFromPublicKey(nobody.publicKey)])))
    for (const [i, spec] of runs.entries()) {
      if (interrupted.signal.aborted) break
      try {
        results.push(await run(spec, i, root, genesis))
      } catch (err) {
        console.log(`run ${i + 1} failed: ${(err as Error).stack ?? String(err)}`)
      }
    }
  } finally {
    await Promise.all([...live].map(async w => { await w.stop() }))
    await Promise.all(owners.map(async o => { await o.stop().catch(() => {}) }))
    await rm(root, { recursive: true, force: true }).catch(() => {})
  }
  if (interrupted.signal.aborted) return

  printSummary(summary)

  // Bytes per member should follow the members nearby, not the space's size.
  const on = results.filter(r => r.spec.interest).sort((a, b) => b.spec.members - a.spec.members)
  if (on.length >= 2) {
    const [big, small] = [on[0], on[on.length - 1]]
    console.log(`\ninterest on: bytes in per member N=${big.spec.members} / N=${small.spec.members}: ${fmt(big.bytesInPerMember / small.bytesInPerMember, 2)} ` +
      `(space ${fmt(big.spec.members / small.spec.members, 1)}x larger; near members ${fmt(big.nearCount)} vs ${fmt(small.nearCount)}, within ${AOI_RADIUS} m ${fmt(big.within)} vs ${fmt(small.within)})`)
  }
  const off = results.find(r => !r.spec.interest)
  const sameOn = on.find(r => r.spec.members === off?.spec.members)
  if (off != null && sameOn != null) {
    console.log(`interest off / on at N=${off.spec.members}: bytes in per member ${fmt(off.bytesInPerMember / sameOn.bytesInPerMember, 1)}x`)
  }
  console.log(`\ntotal ${fmt((performance.now() - started) / 1000)} s`)
}

await main()
