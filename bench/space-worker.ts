/**
 * One worker of the space benchmark (bench/space.ts): a share of the simulated members, each a
 * full PeerverseNode on loopback TCP, all in this process, so K workers spread the members over
 * the machine's cores.
 *
 * Started with child_process.fork by bench/space.ts; answers IPC requests `{ id, op, ...args }`
 * with `{ id, ok, result | error }` (requests may overlap). `init` starts the members, joins each
 * to the space through the coordinator's node and puts it at its seeded start; `go` starts every
 * member's seeded random walk (a move() every MOVE_MS at WALK_SPEED) and the ping anchor;
 * `begin`/`end` bracket the measurement window and `end` returns what was measured in it: the
 * latency histograms, this process's CPU, socket and /proc/self/io byte counts, and counters. On
 * `stop`, or when the parent goes away, it stops every node, deletes the data dirs and exits.
 *
 * How latency is taken. Every process reads the one machine clock, so a receiver times a frame as
 * Date.now() minus the frame's `time` (the sender's clock when it built the frame). A move is
 * timed the same way from its move() call: the member's height (y, which interest management
 * ignores) carries Date.now() of the move mod 2·MAX_ALTITUDE ms, shifted into ±MAX_ALTITUDE (exact
 * in the frame's f32), so `move -> seen` includes the wait for the service's next 20 Hz tick.
 * Only 'space:presence' events raised inside SpacePresence#takePresence (a presence frame, over a stream or, with interest
 * management off, over gossip) count as frames; the others come from signed beacons and are timed
 * separately. That split is bench-only instrumentation: takePresence is wrapped on the prototype.
 */
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { Session } from 'node:inspector/promises'
import { join } from 'node:path'
import * as netSocket from 'node:net'
import { monitorEventLoopDelay, performance } from 'node:perf_hooks'
import { pathToFileURL } from 'node:url'
import { defaultConfig, mergeConfig } from '../src/node/config.ts'
import { createNode, type PeerverseNode } from '../src/node/node.ts'
import { spaceTopic } from '../src/space/index.ts'
import { SpacePresence } from '../src/space/streams.ts'
import { MAX_ALTITUDE } from '../src/space/world.ts'
import { seeded, type Random } from './lib.ts'

/** A move() per member this often (the service's fastest presence rate, 20 Hz). */
export const MOVE_MS = 50
/** Walking speed, metres per second, and how sharply the walk may turn per step (radians, ±half). */
export const WALK_SPEED = 1.5
const TURN_PER_STEP = 0.5
/** Height (y) carries the move's clock modulo this (ms), shifted into ±MAX_ALTITUDE (move() clamps y there). */
export const Y_CLOCK_MOD = 2 * MAX_ALTITUDE
/** Members of each worker that ping a random connected member (the raw transport anchor), and how often. */
const PINGERS = 2
const PING_GAP_MS = 200
const PING_TIMEOUT_MS = 5_000
/** Connecting to the coordinator's node and seeing it on the space topic; then joining. */
const CONNECT_DEADLINE_MS = 60_000
const JOIN_ATTEMPTS = 3
/** Members a worker starts at once. */
const STARTING = 3

export interface MemberInit {
  /** Seeds this member's walk. */
  seed: number
  x: number
  z: number
  heading: number
}

export interface WorkerInit {
  index: number
  /** Data dirs go under this (the coordinator deletes it too, in case we are killed). */
  dir: string
  space: string
  /** The coordinator's node: bootstrap multiaddr (with /p2p/) and peer id. */
  bootstrap: string
  owner: string
  genesis: string
  interest: boolean
  grid: { width: number, depth: number }
  members: MemberInit[]
  /** No member starts after this long (ms); those left are reported as failed. */
  startDeadlineMs: number
  /** Write a CPU profile of the measurement window (V8 .cpuprofile) to this path. */
  profile?: string
}

/** Histogram of integer milliseconds as [ms, count] pairs. */
export type Pairs = Array<[number, number]>

export interface Probe {
  rssBytes: number
  /** Longest event-loop delay since the previous probe (ms). */
  loopMaxMs: number
  positions: Array<[number, number]>
  nearCount: number[]
  connections: number[]
}

export interface WindowStats {
  members: number
  seconds: number
  cpuMs: number
  elu: number
  loopP99Ms: number
  loopMaxMs: number
  /** /proc/self/io: bytes read and written by this process in the window (sockets, and LevelDB's files). */
  rcharBytes: number
  wcharBytes: number
  /** Bytes read from and written to TCP sockets (every libp2p connection) in the window. */
  socketInBytes: number
  socketOutBytes: number
  /** Presence frame payload bytes handed to takePresence. */
  presenceBytes: number
  frames: number
  frameLatency: Pairs
  moveLatency: Pairs
  beaconLatency: Pairs
  pingRtt: Pairs
  pingErrors: number
  moves: number
  moveErrors: number
  rejected: Record<string, number>
  frameSourceInstrumented: boolean
}

export interface WorkerOps {
  init: { args: { init: WorkerInit }, result: { members: Array<{ did: string, peerId: string }>, ms: number, failed: string[] } }
  roster: { args: { dids: string[] }, result: { seen: number[] } }
  go: { args: { peers: string[] }, result: null }
  probe: { args: Record<string, never>, result: Probe }
  begin: { args: Record<string, never>, result: null }
  end: { args: Record<string, never>, result: WindowStats }
  stop: { args: Record<string, never>, result: null }
}

export type Request = { [K in keyof WorkerOps]: { id: number, op: K } & WorkerOps[K]['args'] }[keyof WorkerOps]
export type Reply = { id: number, ok: true, result: unknown } | { id: number, ok: false, error: string }

class Histogram {
  readonly counts = new Map<number, number>()
  n = 0
  add (ms: number): void {
    const k = Math.max(0, Math.round(ms))
    this.counts.set(k, (this.counts.get(k) ?? 0) + 1)
    this.n++
  }

  pairs (): Pairs { return [...this.counts] }
}

async function procIo (): Promise<{ rchar: number, wchar: number }> {
  try {
    const text = await readFile('/proc/self/io', 'utf8')
    const get = (k: string): number => Number(new RegExp(`^${k}: (\\d+)$`, 'm').exec(text)?.[1] ?? NaN)
    return { rchar: get('rchar'), wchar: get('wchar') }
  } catch {
    return { rchar: NaN, wchar: NaN }
  }
}

const progress = (line: string): void => { process.stderr.write(`[bench] ${line}\n`) }
const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

async function waitFor (ready: () => boolean, deadlineMs: number, everyMs = 50): Promise<boolean> {
  const end = performance.now() + deadlineMs
  while (!ready()) {
    if (performance.now() > end) return false
    await sleep(everyMs)
  }
  return true
}

// -- bytes on TCP sockets: what libp2p reads and writes, without LevelDB's file I/O ------------

const socketBytes = { in: 0, out: 0 }

/** Counts bytes through every TCP socket (bench-only; the IPC channel and stdio are not TCP). */
function countSocketBytes (): void {
  const proto = netSocket.Socket.prototype as unknown as { push: (...a: unknown[]) => boolean, write: (...a: unknown[]) => boolean }
  const push = proto.push
  const write = proto.write
  const tcp = (s: netSocket.Socket): boolean => (s as unknown as { _handle?: { constructor?: { name?: string } } })._handle?.constructor?.name === 'TCP'
  proto.push = function (this: netSocket.Socket, ...args: unknown[]): boolean {
    const chunk = args[0]
    if (chunk instanceof Uint8Array && tcp(this)) socketBytes.in += chunk.byteLength
    return push.apply(this, args)
  }
  proto.write = function (this: netSocket.Socket, ...args: unknown[]): boolean {
    const chunk = args[0]
    if (chunk instanceof Uint8Array && tcp(this)) socketBytes.out += chunk.byteLength
    return write.apply(this, args)
  }
}

// -- what a frame is: takePresence on the stack ------------------------------------------------

let inFrame = 0
let frameBytes = 0
let frameSourceInstrumented = false

/** Wraps SpacePresence#takePresence (bench-only) so a presence event can tell a frame from a beacon. */
function instrumentFrames (): void {
  const proto = SpacePresence.prototype as unknown as { takePresence?: (...args: unknown[]) => unknown }
  const original = proto.takePresence
  if (typeof original !== 'function') return
  proto.takePresence = function (this: unknown, ...args: unknown[]): unknown {
    const bytes = args[3]
    if (bytes instanceof Uint8Array) frameBytes += bytes.length
    inFrame++
    try {
      return original.apply(this, args)
    } finally {
      inFrame--
    }
  }
  frameSourceInstrumented = true
}

// -- members -----------------------------------------------------------------------------------

interface Member {
  node: PeerverseNode
  rand: Random
  x: number
  z: number
  heading: number
  /** Per sender did: the last move clock (y) seen, so a repeated position is not timed twice. */
  lastY: Map<string, number>
}

async function runWorker (): Promise<void> {
  instrumentFrames()
  countSocketBytes()
  const send = (msg: Reply): void => { if (process.connected) process.send?.(msg) }
  /** Members that joined, and every node started (joined or not), for shutdown. */
  const members: Member[] = []
  const nodes = new Set<PeerverseNode>()
  let init: WorkerInit | undefined
  let walkTimer: ReturnType<typeof setInterval> | undefined
  let lastStep = 0
  let peers: string[] = []
  let going = false
  let measuring = false
  let exiting = false

  const frameLatency = new Histogram()
  const moveLatency = new Histogram()
  const beaconLatency = new Histogram()
  const pingRtt = new Histogram()
  let frames = 0
  let pingErrors = 0
  let moves = 0
  let moveErrors = 0
  let rejected: Record<string, number> = {}
  const loop = monitorEventLoopDelay({ resolution: 10 })
  loop.enable()
  const probeLoop = monitorEventLoopDelay({ resolution: 10 })
  probeLoop.enable()
  let profiler: Session | undefined
  let window: { t: number, cpu: NodeJS.CpuUsage, elu: ReturnType<typeof performance.eventLoopUtilization>, io: { rchar: number, wchar: number }, frameBytes: number, socketIn: number, socketOut: number } | undefined

  const listen = (m: Member): void => {
    m.node.addEventListener('space:presence', evt => {
      if (!measuring) return
      const d = evt.detail
      const now = Date.now()
      if (inFrame > 0) {
        if (!d.moving) return
        frames++
        frameLatency.add(now - d.time)
        const y = d.position[1]
        if (m.lastY.get(d.did) === y) return
        m.lastY.set(d.did, y)
        // The move's clock mod Y_CLOCK_MOD, and how long before the frame was built it was made
        // (under Y_CLOCK_MOD: a frame carries the latest move), so long latencies do not alias.
        const movedAt = y + MAX_ALTITUDE
        const wait = ((d.time % Y_CLOCK_MOD) - movedAt + Y_CLOCK_MOD) % Y_CLOCK_MOD
        moveLatency.add(now - d.time + wait)
      } else if (!d.near) {
        // A beacon over gossip: for a far member its time is the beacon's.
        beaconLatency.add(now - d.time)
      }
    })
    m.node.addEventListener('peer:rejected', evt => {
      if (!measuring) return
      const kind = `${evt.detail.protocol} ${evt.detail.error.split(':')[0]}`
      rejected[kind] = (rejected[kind] ?? 0) + 1
    })
  }

  const position = (m: Member): [number, number, number] => [m.x, (Date.now() % Y_CLOCK_MOD) - MAX_ALTITUDE, m.z]
  const rotation = (m: Member): [number, number, number, number] => [0, Math.sin(m.heading / 2), 0, Math.cos(m.heading / 2)]

  /** One step of every member's walk: turn a little, walk on, bounce off the edges of the grid. */
  const step = (): void => {
    if (init == null) return
    const now = performance.now()
    const dt = Math.min(0.2, (now - lastStep) / 1000)
    lastStep = now
    const { width, depth } = init.grid
    for (const m of members) {
      m.heading += (m.rand() - 0.5) * TURN_PER_STEP
      m.x += Math.cos(m.heading) * WALK_SPEED * dt
      m.z += Math.sin(m.heading) * WALK_SPEED * dt
      if (m.x < 0 || m.x > width) { m.x = m.x < 0 ? -m.x : 2 * width - m.x; m.heading = Math.PI - m.heading }
      if (m.z < 0 || m.z > depth) { m.z = m.z < 0 ? -m.z : 2 * depth - m.z; m.heading = -m.heading }
      try {
        m.node.space.move(init.space, position(m), rotation(m))
        if (measuring) moves++
      } catch {
        if (measuring) moveErrors++
      }
    }
  }

  /** The anchor: a member pings a random connected member, RTT halved later. */
  const pinger = async (m: Member): Promise<void> => {
    const rand = seeded(m.rand.word())
    while (going) {
      const connected = new Set(m.node.net.getConnections().map(c => c.remotePeer.toString()))
      const targets = peers.filter(p => p !== m.node.peerId && connected.has(p))
      if (targets.length > 0) {
        const target = rand.pick(targets)
        try {
          const rtt = await m.node.ping(target, { signal: AbortSignal.timeout(PING_TIMEOUT_MS) })
          if (measuring) pingRtt.add(rtt)
        } catch {
          if (measuring) pingErrors++
        }
      }
      await sleep(PING_GAP_MS)
    }
  }

  /** Per member started: ms to start its node, to see the owner on the topic, to join. */
  const phases: Array<[number, number, number]> = []

  /** Starts one member: node up, connected to the coordinator's node, joined, at its start. */
  const startMember = async (w: WorkerInit, k: number, spec: MemberInit): Promise<Member> => {
    const t0 = performance.now()
    const dir = join(w.dir, `m${k}`)
    await mkdir(dir, { recursive: true })
    const node = await createNode(mergeConfig(defaultConfig(dir), {
      discovery: { mdns: false },
      listen: ['/ip4/127.0.0.1/tcp/0'],
      bootstrap: [w.bootstrap],
      api: false,
      dht: { mode: 'server' },
      relay: { server: false },
      space: { interest: w.interest },
      ledger: { genesis: w.genesis }
    }))
    const m: Member = { node, rand: seeded(spec.seed), x: spec.x, z: spec.z, heading: spec.heading, lastY: new Map() }
    nodes.add(node)
    await node.start()
    listen(m)
    const t1 = performance.now()
    // Discovery dials the bootstrap address with backoff; join once its subscription to the space is known.
    const topic = spaceTopic(w.space)
    const linked = await waitFor(() => node.topicPeers(topic).includes(w.owner), CONNECT_DEADLINE_MS)
    if (!linked) throw new Error(`member ${w.index}/${k} did not see the space's owner on ${topic} in ${CONNECT_DEADLINE_MS} ms`)
    const t2 = performance.now()
    for (let attempt = 1; ; attempt++) {
      try {
        await node.space.join(w.space, { name: `member ${w.index}/${k}` })
        break
      } catch (err) {
        if (attempt >= JOIN_ATTEMPTS) throw err
        await sleep(500 * attempt)
      }
    }
    node.space.move(w.space, position(m), rotation(m))
    phases.push([t1 - t0, t2 - t1, performance.now() - t2])
    members.push(m)
    return m
  }

  const ops: { [K in keyof WorkerOps]: (args: WorkerOps[K]['args']) => Promise<WorkerOps[K]['result']> } = {
    async init ({ init: w }) {
      init = w
      const t0 = performance.now()
      const failed: string[] = []
      const out: Array<{ did: string, peerId: string }> = []
      let next = 0
      // STARTING members at a time; none begins after the deadline (the figures count joined members only).
      const lane = async (): Promise<void> => {
        while (next < w.members.length && !exiting) {
          const k = next++
          if (performance.now() - t0 > w.startDeadlineMs) { failed.push(`member ${w.index}/${k}: not started, past the ${w.startDeadlineMs / 1000} s start deadline`); continue }
          let m: Member | undefined
          try {
            m = await startMember(w, k, w.members[k])
            out.push({ did: m.node.did, peerId: m.node.peerId })
          } catch (err) {
            failed.push(`member ${w.index}/${k}: ${(err as Error).message}`)
            continue
          }
          if (out.length % 5 === 0 || out.length === w.members.length) {
            const last = phases.slice(-5)
            const avg = (i: number): string => (last.reduce((a, p) => a + p[i], 0) / last.length).toFixed(0)
            progress(`worker ${w.index}: ${out.length}/${w.members.length} members in ${((performance.now() - t0) / 1000).toFixed(1)} s (last ${last.length}: start ${avg(0)} ms, see owner ${avg(1)} ms, join ${avg(2)} ms each)`)
          }
        }
      }
      await Promise.all(Array.from({ length: STARTING }, lane))
      // A member that did not join is stopped and left out.
      const joined = new Set(members.map(m => m.node))
      await Promise.all([...nodes].filter(n => !joined.has(n)).map(async n => { nodes.delete(n); await n.stop().catch(() => {}) }))
      return { members: out, ms: performance.now() - t0, failed }
    },

    async roster ({ dids }) {
      const all = new Set(dids)
      return {
        seen: members.map(m => {
          try {
            return m.node.space.who(init!.space).filter(v => v.did !== m.node.did && all.has(v.did)).length
          } catch {
            return 0
          }
        })
      }
    },

    async go ({ peers: list }) {
      peers = list
      going = true
      lastStep = performance.now()
      walkTimer = setInterval(step, MOVE_MS)
      for (const m of members.slice(0, PINGERS)) void pinger(m)
      return null
    },

    async probe () {
      const result: Probe = {
        rssBytes: process.memoryUsage().rss,
        loopMaxMs: probeLoop.max / 1e6,
        positions: members.map(m => [m.x, m.z]),
        nearCount: members.map(m => { try { return m.node.space.nearCount(init!.space) } catch { return 0 } }),
        connections: members.map(m => m.node.net.getConnections().length)
      }
      probeLoop.reset()
      return result
    },

    async begin () {
      frameLatency.counts.clear(); frameLatency.n = 0
      moveLatency.counts.clear(); moveLatency.n = 0
      beaconLatency.counts.clear(); beaconLatency.n = 0
      pingRtt.counts.clear(); pingRtt.n = 0
      frames = 0; pingErrors = 0; moves = 0; moveErrors = 0; rejected = {}
      for (const m of members) m.lastY.clear()
      loop.reset()
      if (init?.profile != null) {
        profiler = new Session()
        profiler.connect()
        await profiler.post('Profiler.enable')
        await profiler.post('Profiler.setSamplingInterval', { interval: 500 })
        await profiler.post('Profiler.start')
      }
      window = { t: performance.now(), cpu: process.cpuUsage(), elu: performance.eventLoopUtilization(), io: await procIo(), frameBytes, socketIn: socketBytes.in, socketOut: socketBytes.out }
      measuring = true
      return null
    },

    async end () {
      measuring = false
      if (window == null) throw new Error('end without begin')
      const io = await procIo()
      const cpu = process.cpuUsage(window.cpu)
      const elu = performance.eventLoopUtilization(window.elu).utilization
      const seconds = (performance.now() - window.t) / 1000
      if (profiler != null && init?.profile != null) {
        const { profile } = await profiler.post('Profiler.stop')
        await writeFile(init.profile, JSON.stringify(profile))
        profiler.disconnect()
        profiler = undefined
      }
      const stats: WindowStats = {
        members: members.length,
        seconds,
        cpuMs: (cpu.user + cpu.system) / 1000,
        elu,
        loopP99Ms: loop.percentile(99) / 1e6,
        loopMaxMs: loop.max / 1e6,
        rcharBytes: io.rchar - window.io.rchar,
        wcharBytes: io.wchar - window.io.wchar,
        socketInBytes: socketBytes.in - window.socketIn,
        socketOutBytes: socketBytes.out - window.socketOut,
        presenceBytes: frameBytes - window.frameBytes,
        frames,
        frameLatency: frameLatency.pairs(),
        moveLatency: moveLatency.pairs(),
        beaconLatency: beaconLatency.pairs(),
        pingRtt: pingRtt.pairs(),
        pingErrors,
        moves,
        moveErrors,
        rejected,
        frameSourceInstrumented
      }
      return stats
    },

    async stop () {
      return null
    }
  }

  const shutdown = async (code: number): Promise<void> => {
    if (exiting) return
    exiting = true
    going = false
    measuring = false
    clearInterval(walkTimer)
    await Promise.all([...nodes].map(async n => { await n.stop().catch(() => {}) }))
    if (init != null) await rm(init.dir, { recursive: true, force: true }).catch(() => {})
    if (process.connected) process.disconnect()
    process.exit(code)
  }
  process.on('disconnect', () => { void shutdown(0) })
  process.on('SIGTERM', () => { void shutdown(0) })
  process.on('SIGINT', () => { void shutdown(0) })

  process.on('message', (msg: Request) => {
    void (async () => {
      if (exiting) return
      try {
        const result = await (ops[msg.op] as (a: unknown) => Promise<unknown>)(msg)
        send({ id: msg.id, ok: true, result })
      } catch (err) {
        send({ id: msg.id, ok: false, error: (err as Error).stack ?? String(err) })
      }
      if (msg.op === 'stop') await shutdown(0)
    })()
  })
  send({ id: 0, ok: true, result: 'ready' })
}

if (process.argv[1] != null && import.meta.url === pathToFileURL(process.argv[1]).href) {
  if (process.send == null) {
    process.stderr.write('bench/space-worker.ts is started by bench/space.ts (child_process.fork), not run directly\n')
    process.exit(2)
  }
  await runWorker()
}
