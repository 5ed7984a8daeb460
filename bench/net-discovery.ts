/**
 * Network benchmark, part 3: do default peers find each other? Two swarms of PEERS peers in one
 * process on loopback TCP, one after the other, each peer told only the previous one (a chain)
 * and running the node's own Discovery (bootstrap dial and DHT walk), mDNS off:
 *
 * - ours: default settings (WAN DHT in `auto` mode, the LAN DHT a server);
 * - anchor: the configuration before the LAN DHT: every peer `dhtMode: 'server'`, one DHT.
 *
 * Same keys, same chain and the same seeded sample of lookups for both. Figures: the time from
 * the first peer's start until one round of the sample's find-peer lookups (SAMPLE pairs, each
 * limited to LOOKUP_TIMEOUT_MS, CONCURRENCY at a time) all succeed, rounds run back to back; then
 * find-peer latency p50 / p99 / max over LOOKUPS lookups one at a time. Printed, not asserted.
 */
import { performance } from 'node:perf_hooks'
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { Discovery } from '../src/net/discovery.ts'
import { dhtStatus, findPeerOnDhts } from '../src/net/dhts.ts'
import { createNetwork, type Network } from '../src/net/network.ts'
import { seeded, type SummaryRow } from './lib.ts'

const PEERS = 50
/** Pairs in the convergence sample, lookups at once while checking it, and the deadline. */
const SAMPLE = 100
const CONCURRENCY = 8
const CONVERGE_DEADLINE_MS = 150_000
const LOOKUPS = 100
const LOOKUP_TIMEOUT_MS = 10_000

const progress = (line: string): void => { process.stderr.write(`[bench] ${line}\n`) }
const fmt = (v: number, digits = 1): string => Number.isFinite(v) ? v.toFixed(digits) : 'n/a'

function percentile (values: number[], p: number): number {
  if (values.length === 0) return NaN
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length, Math.max(1, Math.ceil(p / 100 * sorted.length))) - 1]
}

interface Swarm { nets: Network[], discoveries: Discovery[], t0: number }

/** Starts the chain: peer i is told peer i-1 only. Keys come from `seed`, so both swarms are the same. */
async function buildChain (seed: number, anchor: boolean): Promise<Swarm> {
  const rand = seeded(seed)
  const nets: Network[] = []
  const discoveries: Discovery[] = []
  const t0 = performance.now()
  for (let i = 0; i < PEERS; i++) {
    const net = await createNetwork({
      privateKey: await generateKeyPairFromSeed('Ed25519', rand.bytes(32)),
      listen: ['/ip4/127.0.0.1/tcp/0'],
      dhtMode: anchor ? 'server' : 'auto',
      lanDht: !anchor,
      relayServer: false,
      mdns: false
    })
    await net.start()
    const bootstrap = i === 0 ? [] : [nets[i - 1].getMultiaddrs()[0].toString()]
    const discovery = new Discovery(net, bootstrap)
    discovery.start()
    nets.push(net)
    discoveries.push(discovery)
  }
  return { nets, discoveries, t0 }
}

/** One find-peer through every DHT the network runs; ms, or undefined when not found in time. */
async function lookup (from: Network, to: Network): Promise<number | undefined> {
  const t = performance.now()
  try {
    await findPeerOnDhts(from, to.peerId, { signal: AbortSignal.timeout(LOOKUP_TIMEOUT_MS) })
    return performance.now() - t
  } catch {
    return undefined
  }
}

function pairs (count: number, seed: number): Array<[number, number]> {
  const rand = seeded(seed)
  return Array.from({ length: count }, () => {
    const q = rand.int(PEERS)
    let t = rand.int(PEERS - 1)
    if (t >= q) t++
    return [q, t]
  })
}

/** Runs sample rounds until one has every lookup succeed; returns seconds from the first start, and rounds. */
async function converge (swarm: Swarm, sample: Array<[number, number]>): Promise<{ seconds: number, rounds: number, lastFailed: number }> {
  let rounds = 0
  let lastFailed = sample.length
  while (performance.now() - swarm.t0 < CONVERGE_DEADLINE_MS) {
    rounds++
    let failed = 0
    let next = 0
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
      while (next < sample.length) {
        const [q, t] = sample[next++]
        if (await lookup(swarm.nets[q], swarm.nets[t]) == null) failed++
      }
    }))
    lastFailed = failed
    progress(`  round ${rounds}: ${sample.length - failed}/${sample.length} found at ${fmt((performance.now() - swarm.t0) / 1000)} s`)
    if (failed === 0) return { seconds: (performance.now() - swarm.t0) / 1000, rounds, lastFailed }
  }
  return { seconds: NaN, rounds, lastFailed }
}

interface SwarmResult { converged: { seconds: number, rounds: number, lastFailed: number }, ms: number[], failed: number, lan: number[], wan: number[] }

async function measure (seed: number, anchor: boolean): Promise<SwarmResult> {
  const name = anchor ? 'anchor (dhtMode server, one DHT)' : 'ours (default settings)'
  progress(`discovery: ${name}: ${PEERS} peers in a chain`)
  const swarm = await buildChain(seed, anchor)
  try {
    const converged = await converge(swarm, pairs(SAMPLE, seed + 1))
    const ms: number[] = []
    let failed = 0
    for (const [q, t] of pairs(LOOKUPS, seed + 2)) {
      const r = await lookup(swarm.nets[q], swarm.nets[t])
      if (r == null) failed++
      else ms.push(r)
    }
    const status = swarm.nets.map(n => dhtStatus(n))
    return { converged, ms, failed, lan: status.map(s => s.lan.peers), wan: status.map(s => s.wan.peers) }
  } finally {
    for (const d of swarm.discoveries) d.stop()
    await Promise.all(swarm.nets.map(async n => n.stop()))
  }
}

/** Part 3 of bench:net: ours against the anchor, same run. */
export async function benchDiscovery (seed: number, result: (row: SummaryRow) => void): Promise<void> {
  const ours = await measure(seed * 1000 + 3, false)
  const anchor = await measure(seed * 1000 + 3, true)
  const rt = (r: SwarmResult): string => `lan ${Math.min(...r.lan)}..${Math.max(...r.lan)}, wan ${Math.min(...r.wan)}..${Math.max(...r.wan)}`
  console.log(`discovery routing tables at the end: ours ${rt(ours)}; anchor ${rt(anchor)}`)
  result({
    figure: `discovery: s from the first start of ${PEERS} chained peers until one round of ${SAMPLE} seeded find-peer lookups all succeed (rounds: ours ${ours.converged.rounds}, anchor ${anchor.converged.rounds}; failed in the last: ${ours.converged.lastFailed}, ${anchor.converged.lastFailed})`,
    ours: fmt(ours.converged.seconds),
    anchor: fmt(anchor.converged.seconds),
    ratio: fmt(ours.converged.seconds / anchor.converged.seconds, 2)
  })
  for (const [label, p] of [['p50', 50], ['p99', 99], ['max', 100]] as const) {
    const o = percentile(ours.ms, p)
    const a = percentile(anchor.ms, p)
    result({
      figure: `discovery: find-peer ${label} after that, ${LOOKUPS} one at a time (ms; failed: ours ${ours.failed}, anchor ${anchor.failed})`,
      ours: fmt(o, 2),
      anchor: fmt(a, 2),
      ratio: fmt(o / a, 2)
    })
  }
}
