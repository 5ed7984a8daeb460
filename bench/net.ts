/**
 * Network benchmark: what our libp2p assembly (src/net/network.ts) costs on one machine, with a
 * plain node:net socket as the anchor wherever one applies. It prints figures and asserts nothing.
 *
 * 1. Stream throughput between two peers (TCP + Noise + Yamux) against a bare TCP socket pair.
 * 2. A 50-peer swarm in one process on loopback TCP: DHT lookup latency and depth, then GossipSub
 *    delivery latency, delivery ratio and amplification (bytes sent per payload byte delivered).
 *    All 50 peers share one event loop, so latencies here are mostly the swarm's summed CPU
 *    time; the CPU figures printed beside them say how much. (The /memory transport was tried
 *    and dropped: its connection monitor pings failed with TooManyOutboundProtocolStreamsError
 *    and aborted about a quarter of the connections, leaving some routing tables at 3 peers.)
 *
 * 3. Do default peers find each other (bench/net-discovery.ts): 50 chained peers with default
 *    settings against the same swarm with every peer a WAN DHT server, the configuration before
 *    the LAN DHT.
 *
 * `node bench/net.ts [throughput] [swarm] [discovery]` runs only the parts named (default all).
 * Everything random comes from one seeded PRNG (BENCH_SEED, default 1), peer keys included,
 * so two runs build the same swarm. Results go to stdout, progress to stderr.
 */
import { createHash } from 'node:crypto'
import * as netSocket from 'node:net'
import { once } from 'node:events'
import { performance } from 'node:perf_hooks'
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import type { PeerId, PrivateKey } from '@libp2p/interface'
import { createNetwork, type Network } from '../src/net/network.ts'
import { seeded, printSummary, type SummaryRow } from './lib.ts'
import { benchDiscovery } from './net-discovery.ts'

const MiB = 1024 * 1024

/** Part 1: bytes moved per throughput run, chunk size, runs per side (median reported). */
const STREAM_BYTES = 256 * MiB
const STREAM_CHUNK_BYTES = 64 * 1024
const STREAM_WARMUP_BYTES = 16 * MiB
const STREAM_RUNS = 3
const SINK_PROTOCOL = '/peerverse/bench/sink/1.0.0'

/** Part 2: swarm size and shape. Peer i dials peer 0 and this many random earlier peers. */
const PEERS = 50
const RANDOM_DIALS_PER_PEER = 2
/** Every peer's DHT routing table must hold this many peers before lookups start (or the deadline passes). */
const ROUTING_TABLE_TARGET = 20
const ROUTING_TABLE_DEADLINE_MS = 30_000
const LOOKUPS = 200
const LOOKUP_TIMEOUT_MS = 10_000

/** Gossip: one topic, every peer meshed with at least Dlo (4) peers before publishing. */
const TOPIC = 'peerverse/bench/gossip/1'
const MESH_TARGET = 4
const MESH_DEADLINE_MS = 30_000
const MESSAGES = 200
const MESSAGE_BYTES = 1024
/** Each message waits for all its deliveries (or this long), then this gap, before the next. */
const MESSAGE_TIMEOUT_MS = 5_000
const MESSAGE_GAP_MS = 20
/** Background load is sampled over this window before the lookups (libp2p pings every connection every 10 s). */
const IDLE_SAMPLE_MS = 10_000
/** After the last message, stop waiting for stragglers once this long passes without one. */
const DELIVERY_QUIET_MS = 2_000

const SEED = Number(process.env.BENCH_SEED ?? 1)

// ---------------------------------------------------------------------------------------------
// small helpers

const rand = seeded(SEED)

const progress = (line: string): void => { process.stderr.write(`[bench] ${line}\n`) }
const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

/** Resolves with `p`'s value, or with 'timeout' after `ms`. */
async function withTimeout<T> (p: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const late = new Promise<'timeout'>(resolve => { timer = setTimeout(() => { resolve('timeout') }, ms) })
  try {
    return await Promise.race([p, late])
  } finally {
    clearTimeout(timer)
  }
}

/** Polls `ready` every `everyMs` until it holds or `deadlineMs` passes; returns whether it held. */
async function waitFor (ready: () => boolean, deadlineMs: number, everyMs = 100): Promise<boolean> {
  const end = performance.now() + deadlineMs
  while (!ready()) {
    if (performance.now() > end) return false
    await sleep(everyMs)
  }
  return true
}

/** Nearest-rank percentile of an unsorted sample. */
function percentile (values: number[], p: number): number {
  if (values.length === 0) return NaN
  const sorted = [...values].sort((a, b) => a - b)
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(p / 100 * sorted.length)))
  return sorted[rank - 1]
}

function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

const fmt = (v: number, digits = 1): string => Number.isFinite(v) ? v.toFixed(digits) : 'n/a'

type Row = SummaryRow
const summary: Row[] = []
function result (row: Row): void {
  summary.push(row)
  const extra = row.anchor == null ? '' : `   anchor ${row.anchor}   ratio ${row.ratio ?? ''}`
  console.log(`${row.figure}: ${row.ours}${extra}`)
}

// Count every byte handed to a node:net socket (libp2p's TCP transport writes through
// net.Socket#write). Read as differences around a window; bench-only instrumentation.
let socketBytesWritten = 0
const socketWrite = netSocket.Socket.prototype.write
netSocket.Socket.prototype.write = function (this: netSocket.Socket, ...args: unknown[]): boolean {
  const chunk = args[0]
  if (chunk instanceof Uint8Array) socketBytesWritten += chunk.byteLength
  else if (typeof chunk === 'string') socketBytesWritten += Buffer.byteLength(chunk)
  return (socketWrite as (...a: unknown[]) => boolean).apply(this, args)
} as typeof netSocket.Socket.prototype.write

async function newKey (): Promise<PrivateKey> {
  return generateKeyPairFromSeed('Ed25519', rand.bytes(32))
}

// ---------------------------------------------------------------------------------------------
// 1. stream throughput

/** The receiving side of one transfer: resolves when `expect` bytes have arrived. */
let sink: { expect: number, got: number, done: () => void } | undefined

function arrived (n: number): void {
  if (sink == null) return
  sink.got += n
  if (sink.got >= sink.expect) {
    const s = sink
    sink = undefined
    s.done()
  }
}

async function expectBytes (n: number): Promise<void> {
  await new Promise<void>(resolve => { sink = { expect: n, got: 0, done: resolve } })
}

/** MiB/s for one libp2p stream transfer of `bytes`. */
async function libp2pTransfer (a: Network, b: Network, bytes: number, chunk: Uint8Array): Promise<number> {
  const stream = await a.dialProtocol(b.getMultiaddrs(), SINK_PROTOCOL)
  const received = expectBytes(bytes)
  const t0 = performance.now()
  for (let sent = 0; sent < bytes; sent += chunk.byteLength) {
    if (!stream.send(chunk)) await stream.onDrain()
  }
  await received
  const ms = performance.now() - t0
  await stream.close()
  return bytes / MiB / (ms / 1000)
}

/** MiB/s for one plain TCP socket transfer of `bytes` on 127.0.0.1. */
async function socketTransfer (bytes: number, chunk: Uint8Array): Promise<number> {
  const server = netSocket.createServer(sock => { sock.on('data', (d: Buffer) => { arrived(d.byteLength) }) })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as netSocket.AddressInfo).port
  const client = netSocket.connect(port, '127.0.0.1')
  await once(client, 'connect')
  const received = expectBytes(bytes)
  const t0 = performance.now()
  for (let sent = 0; sent < bytes; sent += chunk.byteLength) {
    if (!client.write(chunk)) await once(client, 'drain')
  }
  await received
  const ms = performance.now() - t0
  client.end()
  await new Promise<void>(resolve => { server.close(() => { resolve() }) })
  return bytes / MiB / (ms / 1000)
}

async function benchThroughput (): Promise<void> {
  progress(`throughput: ${STREAM_RUNS} x ${STREAM_BYTES / MiB} MiB in ${STREAM_CHUNK_BYTES / 1024} KiB chunks`)
  const listen = ['/ip4/127.0.0.1/tcp/0']
  const a = await createNetwork({ privateKey: await newKey(), listen, dhtMode: 'client', relayServer: false })
  const b = await createNetwork({ privateKey: await newKey(), listen, dhtMode: 'client', relayServer: false })
  await a.start()
  await b.start()
  await b.handle(SINK_PROTOCOL, async (stream) => {
    for await (const chunk of stream) arrived(chunk.byteLength)
    await stream.close()
  })
  const chunk = rand.bytes(STREAM_CHUNK_BYTES)

  await libp2pTransfer(a, b, STREAM_WARMUP_BYTES, chunk)
  await socketTransfer(STREAM_WARMUP_BYTES, chunk)
  const ours: number[] = []
  const anchor: number[] = []
  for (let run = 0; run < STREAM_RUNS; run++) {
    ours.push(await libp2pTransfer(a, b, STREAM_BYTES, chunk))
    anchor.push(await socketTransfer(STREAM_BYTES, chunk))
    progress(`  run ${run + 1}: libp2p ${fmt(ours[run])} MiB/s, node:net ${fmt(anchor[run])} MiB/s`)
  }
  await a.stop()
  await b.stop()

  const o = median(ours)
  const n = median(anchor)
  result({
    figure: 'stream throughput, TCP+Noise+Yamux vs node:net (MiB/s, median of 3)',
    ours: fmt(o),
    anchor: fmt(n),
    ratio: fmt(o / n, 3)
  })
}

// ---------------------------------------------------------------------------------------------
// 2. the swarm

/** What the benchmark reads of kad-dht's routing table beyond the public `size`. */
interface RoutingTableView {
  size: number
  kBucketSize?: number
  closestPeers?: (kadId: Uint8Array, options: { count: number }) => PeerId[]
}

/** What the benchmark reads of gossipsub beyond the public GossipSub interface. */
interface GossipView {
  getMeshPeers: (topic: string) => string[]
  streamsOutbound: Map<string, object>
}

// The service is a SingleKadDHT at runtime; NetworkServices types it as the narrower KadDHT.
const routingTable = (n: Network): RoutingTableView => (n.services.dht as unknown as { routingTable: RoutingTableView }).routingTable
const gossip = (n: Network): GossipView => n.services.pubsub as unknown as GossipView

/** Connections closed anywhere in the swarm (a ping timeout under load closes one). */
let connectionsClosed = 0

async function buildSwarm (): Promise<Network[]> {
  progress(`swarm: ${PEERS} peers over loopback TCP`)
  const nets: Network[] = []
  for (let i = 0; i < PEERS; i++) {
    const net = await createNetwork({
      privateKey: await newKey(),
      listen: ['/ip4/127.0.0.1/tcp/0'],
      dhtMode: 'server',
      relayServer: false
    })
    await net.start()
    net.addEventListener('connection:close', () => { connectionsClosed++ })
    const targets = new Set<number>()
    if (i > 0) targets.add(0)
    for (let k = 0; k < RANDOM_DIALS_PER_PEER && i > 1; k++) targets.add(1 + rand.int(i - 1))
    await Promise.all([...targets].map(async t => net.dial(nets[t].getMultiaddrs())))
    nets.push(net)
  }
  return nets
}

/** Waits until every routing table holds ROUTING_TABLE_TARGET peers (or the deadline). */
async function fillRoutingTables (nets: Network[]): Promise<void> {
  const t0 = performance.now()
  const filled = await waitFor(() => nets.every(n => routingTable(n).size >= ROUTING_TABLE_TARGET), ROUTING_TABLE_DEADLINE_MS)
  const sizes = nets.map(n => routingTable(n).size)
  progress(`dht: routing tables ${filled ? 'filled' : 'NOT filled (deadline)'} in ${fmt((performance.now() - t0) / 1000)} s`)
  console.log(`dht routing table sizes: min ${Math.min(...sizes)} / p50 ${percentile(sizes, 50)} / max ${Math.max(...sizes)} (waited for ${ROUTING_TABLE_TARGET})`)
}

/** Byte and copy counters for gossipsub, filled in by instrumentGossip. */
const gossipCount = { rpcBytes: 0, copies: 0, bytesCounted: false, copiesCounted: false }

/**
 * Counts gossipsub's own bytes: every RPC it sends goes through OutboundStream#pushPrefixed
 * (length-prefixed protobuf, before Noise and Yamux framing). And counts full message copies:
 * every RPC leaves through GossipSub#sendRpc or #sendRpcInBatch. Both are patched on the shared
 * prototypes, so the counts cover all peers. Call once the streams exist.
 */
function instrumentGossip (nets: Network[]): void {
  const first = nets.map(n => gossip(n).streamsOutbound.values().next().value).find(v => v != null)
  if (first != null) {
    const proto = Object.getPrototypeOf(first) as { pushPrefixed?: (data: { byteLength: number }) => void }
    const original = proto.pushPrefixed
    if (typeof original === 'function') {
      proto.pushPrefixed = function (this: unknown, data: { byteLength: number }) {
        gossipCount.rpcBytes += data.byteLength
        original.call(this, data)
      }
      gossipCount.bytesCounted = true
    }
  }
  interface Rpc { messages?: unknown[] }
  const gsProto = Object.getPrototypeOf(nets[0].services.pubsub) as {
    sendRpc?: (id: string, rpc: Rpc) => boolean
    sendRpcInBatch?: (tosend: Set<string>, rpc: Rpc) => void
  }
  const sendRpc = gsProto.sendRpc
  const sendRpcInBatch = gsProto.sendRpcInBatch
  if (typeof sendRpc === 'function' && typeof sendRpcInBatch === 'function') {
    gsProto.sendRpc = function (this: unknown, id: string, rpc: Rpc): boolean {
      const n = rpc.messages?.length ?? 0
      const ok = sendRpc.call(this, id, rpc)
      if (ok) gossipCount.copies += n
      return ok
    }
    gsProto.sendRpcInBatch = function (this: unknown, tosend: Set<string>, rpc: Rpc): void {
      sendRpcInBatch.call(this, tosend, rpc)
      gossipCount.copies += tosend.size * (rpc.messages?.length ?? 0)
    }
    gossipCount.copiesCounted = true
  }
}

/** Process CPU, socket and gossip counters, read as differences around a window. */
interface Meter { t: number, cpu: NodeJS.CpuUsage, elu: ReturnType<typeof performance.eventLoopUtilization>, sock: number, rpc: number, copies: number, closed: number }
interface Measured { seconds: number, cpuMs: number, elu: number, sock: number, rpc: number, copies: number, closed: number }

function meter (): Meter {
  return { t: performance.now(), cpu: process.cpuUsage(), elu: performance.eventLoopUtilization(), sock: socketBytesWritten, rpc: gossipCount.rpcBytes, copies: gossipCount.copies, closed: connectionsClosed }
}

function measured (m: Meter): Measured {
  const cpu = process.cpuUsage(m.cpu)
  return {
    seconds: (performance.now() - m.t) / 1000,
    cpuMs: (cpu.user + cpu.system) / 1000,
    elu: performance.eventLoopUtilization(m.elu).utilization,
    sock: socketBytesWritten - m.sock,
    rpc: gossipCount.rpcBytes - m.rpc,
    copies: gossipCount.copies - m.copies,
    closed: connectionsClosed - m.closed
  }
}

/** The idle swarm's background (pings, identify, DHT upkeep, gossip heartbeats), per second. */
interface Background { cpuMsPerSec: number, sockPerSec: number, rpcPerSec: number }

async function sampleBackground (): Promise<Background> {
  const m = meter()
  await sleep(IDLE_SAMPLE_MS)
  const r = measured(m)
  const bg = { cpuMsPerSec: r.cpuMs / r.seconds, sockPerSec: r.sock / r.seconds, rpcPerSec: r.rpc / r.seconds }
  result({
    figure: `swarm idle background, ${PEERS} peers (% of one core; event loop ${fmt(r.elu * 100, 0)}% busy; ${fmt(bg.sockPerSec / 1024)} KiB/s TCP)`,
    ours: fmt(bg.cpuMsPerSec / 10)
  })
  return bg
}

interface Lookup { ms: number, queried: number, sent: number, hops: number }

/** One findPeer, timed to its first FINAL_PEER; hops derived from which response named the target. */
async function lookup (querier: Network, target: PeerId): Promise<Lookup | undefined> {
  // The query starts from the k peers of our routing table closest to the target (depth 1);
  // a peer first named in a response from a depth-d peer is at depth d+1. The answer's depth is
  // the depth of the peer whose response contained the target.
  const rt = routingTable(querier)
  let start: Set<string> | undefined
  if (typeof rt.closestPeers === 'function') {
    const kadId = new Uint8Array(createHash('sha256').update(target.toMultihash().bytes).digest())
    start = new Set(rt.closestPeers(kadId, { count: rt.kBucketSize ?? 20 }).map(p => p.toString()))
  }
  const depth = new Map<string, number>()
  const depthOf = (p: PeerId): number => {
    const key = p.toString()
    if (start == null) return NaN
    return start.has(key) ? 1 : depth.get(key) ?? NaN
  }
  let queried = 0
  let sent = 0
  const t0 = performance.now()
  try {
    for await (const ev of querier.services.dht.findPeer(target, { useCache: false, signal: AbortSignal.timeout(LOOKUP_TIMEOUT_MS) })) {
      if (ev.name === 'SEND_QUERY') {
        sent++
      } else if (ev.name === 'PEER_RESPONSE') {
        queried++
        const d = depthOf(ev.from) + 1
        for (const c of ev.closer) {
          const key = c.id.toString()
          if (!depth.has(key)) depth.set(key, d)
        }
      } else if (ev.name === 'FINAL_PEER') {
        return { ms: performance.now() - t0, queried, sent, hops: depthOf(ev.from) }
      }
    }
  } catch {
    // not found or timed out: counted as a failure below
  }
  return undefined
}

async function benchDht (nets: Network[], bg: Background): Promise<void> {
  progress(`dht: ${LOOKUPS} findPeer lookups, one at a time`)
  const done: Lookup[] = []
  let failed = 0
  const m = meter()
  for (let i = 0; i < LOOKUPS; i++) {
    const q = rand.int(PEERS)
    let t = rand.int(PEERS - 1)
    if (t >= q) t++
    const r = await lookup(nets[q], nets[t].peerId)
    if (r == null) failed++
    else done.push(r)
  }
  const w = measured(m)
  progress(`dht: ${w.closed} connections closed during lookups`)
  const ms = done.map(r => r.ms)
  const queried = done.map(r => r.queried)
  const sent = done.map(r => r.sent)
  const hops = done.map(r => r.hops).filter(h => Number.isFinite(h))
  const hopHist = new Map<number, number>()
  for (const h of hops) hopHist.set(h, (hopHist.get(h) ?? 0) + 1)
  const hist = [...hopHist.entries()].sort((a, b) => a[0] - b[0]).map(([h, c]) => `${h}:${c}`).join(' ')
  const cpuPerLookup = w.cpuMs / LOOKUPS
  const netCpuPerLookup = (w.cpuMs - bg.cpuMsPerSec * w.seconds) / LOOKUPS

  result({ figure: `dht findPeer latency p50 / p99 (ms; ${done.length}/${LOOKUPS} found, ${failed} failed)`, ours: `${fmt(percentile(ms, 50), 2)} / ${fmt(percentile(ms, 99), 2)}` })
  result({ figure: `dht CPU per lookup, whole swarm (ms; ${fmt(netCpuPerLookup)} net of idle background)`, ours: fmt(cpuPerLookup) })
  result({ figure: 'dht peers queried before the answer p50 / p99 (PEER_RESPONSE events)', ours: `${percentile(queried, 50)} / ${percentile(queried, 99)}` })
  result({ figure: 'dht requests sent before the answer p50 / p99 (SEND_QUERY events)', ours: `${percentile(sent, 50)} / ${percentile(sent, 99)}` })
  result({ figure: `dht hops to the answer p50 / p99 (derived for ${hops.length}; histogram ${hist})`, ours: `${percentile(hops, 50)} / ${percentile(hops, 99)}` })
}

/** Per-message delivery bookkeeping, fed by every peer's 'message' listener. */
interface Deliveries {
  latencies: number[]
  seen: Set<number>
  perMessage: Uint16Array
  waiting?: { index: number, resolve: () => void }
}

/** Subscribes every peer to TOPIC with a listener that records delivery latencies. */
function subscribeAll (nets: Network[]): Deliveries {
  const d: Deliveries = { latencies: [], seen: new Set(), perMessage: new Uint16Array(MESSAGES) }
  nets.forEach((net, receiver) => {
    net.services.pubsub.addEventListener('message', (evt) => {
      const msg = evt.detail
      if (msg.topic !== TOPIC || msg.data.byteLength !== MESSAGE_BYTES) return
      const now = performance.now()
      const view = new DataView(msg.data.buffer, msg.data.byteOffset, msg.data.byteLength)
      const index = view.getUint32(8)
      const key = receiver * MESSAGES + index
      if (index >= MESSAGES || d.seen.has(key)) return
      d.seen.add(key)
      d.latencies.push(now - view.getFloat64(0))
      d.perMessage[index]++
      if (d.waiting?.index === index && d.perMessage[index] >= PEERS - 1) d.waiting.resolve()
    })
    net.services.pubsub.subscribe(TOPIC)
  })
  return d
}

async function formMeshes (nets: Network[]): Promise<void> {
  const t0 = performance.now()
  const formed = await waitFor(() => nets.every(n => gossip(n).getMeshPeers(TOPIC).length >= MESH_TARGET), MESH_DEADLINE_MS)
  const sizes = nets.map(n => gossip(n).getMeshPeers(TOPIC).length)
  progress(`gossip: meshes ${formed ? 'formed' : 'NOT formed (deadline)'} in ${fmt((performance.now() - t0) / 1000)} s`)
  console.log(`gossip mesh sizes: min ${Math.min(...sizes)} / p50 ${percentile(sizes, 50)} / max ${Math.max(...sizes)} (waited for ${MESH_TARGET})`)
}

async function benchGossip (nets: Network[], d: Deliveries, bg: Background): Promise<void> {
  // One message in flight at a time: all 50 peers share one event loop here, so a message's
  // 49 deliveries are processed one after another; overlapping messages would only add queueing.
  progress(`gossip: publishing ${MESSAGES} x ${MESSAGE_BYTES} B from random peers, one in flight at a time`)
  const m = meter()
  let publishErrors = 0
  let timedOut = 0
  for (let i = 0; i < MESSAGES; i++) {
    const data = rand.bytes(MESSAGE_BYTES)
    const view = new DataView(data.buffer)
    const publisher = nets[rand.int(PEERS)]
    const delivered = new Promise<void>(resolve => { d.waiting = { index: i, resolve } })
    view.setUint32(8, i)
    view.setFloat64(0, performance.now())
    publisher.services.pubsub.publish(TOPIC, data).catch(() => { publishErrors++ })
    if (await withTimeout(delivered, MESSAGE_TIMEOUT_MS) === 'timeout') timedOut++
    d.waiting = undefined
    await sleep(MESSAGE_GAP_MS)
  }
  const expected = MESSAGES * (PEERS - 1)
  if (d.seen.size < expected) {
    // stragglers: stop once a quiet period passes with no new delivery
    let last = -1
    await waitFor(() => {
      if (d.seen.size === last) return true
      last = d.seen.size
      return false
    }, 30_000, DELIVERY_QUIET_MS)
  }
  const w = measured(m)
  progress(`gossip: ${w.closed} connections closed during publishing`)
  const deliveries = d.seen.size
  const payload = deliveries * MESSAGE_BYTES
  const netCpuPerMessage = (w.cpuMs - bg.cpuMsPerSec * w.seconds) / MESSAGES

  result({ figure: 'gossip delivery latency p50 / p99 (ms)', ours: `${fmt(percentile(d.latencies, 50), 2)} / ${fmt(percentile(d.latencies, 99), 2)}` })
  result({ figure: `gossip delivery ratio (${deliveries} / ${expected}; ${timedOut} messages incomplete after ${MESSAGE_TIMEOUT_MS} ms${publishErrors > 0 ? `; ${publishErrors} publish errors` : ''})`, ours: fmt(deliveries / expected, 4) })
  result({ figure: `gossip CPU per message, whole swarm (ms; ${fmt(netCpuPerMessage)} net of idle background)`, ours: fmt(w.cpuMs / MESSAGES) })
  result({ figure: 'gossip full message copies sent per delivery (1 = no duplicates)', ours: gossipCount.copiesCounted && deliveries > 0 ? fmt(w.copies / deliveries, 2) : 'not measured' })
  if (gossipCount.bytesCounted && deliveries > 0) {
    const net = w.rpc - bg.rpcPerSec * w.seconds
    result({
      figure: `gossip amplification: gossipsub RPC bytes / payload delivered (${fmt(w.rpc / MiB)} MiB in ${fmt(w.seconds)} s; ${fmt(net / payload, 2)} net of idle)`,
      ours: fmt(w.rpc / payload, 2)
    })
  } else {
    result({ figure: 'gossip amplification: gossipsub RPC bytes', ours: 'not measured' })
  }
  if (deliveries > 0) {
    const net = w.sock - bg.sockPerSec * w.seconds
    result({
      figure: `gossip amplification: all TCP bytes written / payload delivered (${fmt(w.sock / MiB)} MiB; ${fmt(net / payload, 2)} net of idle)`,
      ours: fmt(w.sock / payload, 2)
    })
  }
}

// ---------------------------------------------------------------------------------------------

async function main (): Promise<void> {
  const started = performance.now()
  console.log(`peerverse bench:net  seed ${SEED}  node ${process.version}  swarm ${PEERS} peers over loopback TCP`)
  const named = process.argv.slice(2)
  const part = (name: string): boolean => named.length === 0 || named.includes(name)
  if (part('throughput')) await benchThroughput()
  if (part('swarm')) await benchSwarm()
  if (part('discovery')) await benchDiscovery(SEED, result)

  printSummary(summary)
  console.log(`\ntotal ${fmt((performance.now() - started) / 1000)} s`)
}

async function benchSwarm (): Promise<void> {
  const nets = await buildSwarm()
  try {
    await fillRoutingTables(nets)
    const deliveries = subscribeAll(nets)
    await formMeshes(nets)
    instrumentGossip(nets)
    const bg = await sampleBackground()
    await benchDht(nets, bg)
    await benchGossip(nets, deliveries, bg)
  } finally {
    progress('stopping the swarm')
    await Promise.all(nets.map(async n => n.stop()))
  }
}

await main()
