/**
 * Node-only. `npm run bench:nat`: Peerverse on the network-namespace testbed (testbed/), with real
 * `peerverse start` processes and links that have real limits. Needs root; without it (or without
 * namespaces, nftables, tbf) it prints why and exits 0. Printed, not asserted.
 *
 * Parts, run in turn (`node bench/nat.ts [swarm] [punch] [relay]` runs only those named), each adding rows to the
 * shared summary:
 *   swarm  seeders on the internet, each uplink capped with tbf at SEEDER_CAP_BYTES_PER_SECOND;
 *          one downloader with an uncapped link fetches the same file (each of SWARM_FILE_SIZES) from
 *          1, 2 and 4 of them (a fresh downloader each time; only the seeders of a step run). BitTorrent's
 *          premise: 4 capped seeders give close to 4x one. It runs on the testbed's private
 *          internet: on public addresses, a peer's AutoNAT request makes the server dial back,
 *          libp2p hands it the existing connection, and the server closes that connection.
 *   punch  hole punching per pair of NAT behaviours the testbed makes (cone+cone, cone+symmetric,
 *          symmetric+symmetric): PUNCH_ATTEMPTS tries each, each with a fresh dialling peer (new
 *          identity, so no connection is left from the try before) that dials the other through
 *          its relay slot; a try succeeds when both sides hold a direct connection to each other
 *          and a ping crosses. Attempts, successes, time from the dial to the direct connection.
 *          Anchor: DCUtR on the real internet; ours is on emulated NATs (nftables masquerade).
 *   relay  the same 1 -> 1 fetch of RELAYED_CONTENT_MAX_BYTES (so the relay carries it), each way,
 *          directly (two hosts on the internet, TCP) and through a relay (two homes whose peers
 *          run without WebRTC, so their connection stays relayed): MiB/s, p50 of RELAY_REPS.
 */
import { ApiClient } from '../src/api/client.ts'
import { Testbed, testbedUnavailable, type NatKind, type TbHost } from '../testbed/testbed.ts'
import { startNsPeer, type NsPeer } from '../testbed/peer.ts'
import { printSummary, seededBytes, type SummaryRow } from './lib.ts'
import { RELAYED_CONTENT_MAX_BYTES } from '../src/content/index.ts'
import type { NodeStatus, PeerInfoView } from '../src/node/node.ts'
import { join } from 'node:path'
import { readFileSync, writeFileSync } from 'node:fs'
import { loadavg } from 'node:os'

const MiB = 1024 * 1024
/** Each seeder's upload cap. */
export const SEEDER_CAP_BYTES_PER_SECOND = 8 * MiB
/**
 * The swarm part's file sizes, each a run of its own (BENCH_SWARM_MIB=64,256 overrides). A fetch
 * pays about half a second before its bytes flow at the links' rate (the probes, the root block, the
 * first leaves); at 4 x 8 MiB/s, 64 MiB flows in 2 s, so that start-up alone holds 64 MiB near 3x
 * one seeder. 256 MiB shows the swarm's rate once started, as a download of a large world does.
 */
export const SWARM_FILE_SIZES = (process.env.BENCH_SWARM_MIB ?? '64,256').split(',').map(m => Number(m) * MiB)
export const SWARM_STEPS = [1, 2, 4]
/** How long the downloader may take to connect to a step's seeders, and to fetch. */
const CONNECT_DEADLINE_MS = 60_000
const FETCH_DEADLINE_MS = 10 * 60_000
const SEED = Number(process.env.BENCH_SEED ?? 1)
/**
 * Before each swarm fetch, the downloader and the step's seeders settle: each uses under
 * SETTLE_CPU_CORES over SETTLE_WINDOW_MS (at most SETTLE_DEADLINE_MS). A peer that has just met k
 * others spends its first second or two on their chain, DHT and peer records; on 2 cores shared by
 * k + 1 peers that burst grows with k and delayed the 4-seeder fetch's first bytes, so the figure
 * measured the start-up more than the swarm. BENCH_SWARM_SETTLE=0 fetches at once, as before.
 */
const SETTLE_CPU_CORES = 0.1
const SETTLE_WINDOW_MS = 500
const SETTLE_DEADLINE_MS = 20_000
const SETTLE = process.env.BENCH_SWARM_SETTLE !== '0'
/** BENCH_SWARM_LOG=<dir>: each swarm step's downloader logs peerverse:swarm and peerverse:content there (swarm-<k>.log). */
const SWARM_LOG_DIR = process.env.BENCH_SWARM_LOG

const progress = (line: string): void => { process.stderr.write(`[bench:nat] ${line}\n`) }
const fmt = (v: number, digits = 1): string => Number.isFinite(v) ? v.toFixed(digits) : 'n/a'
const summary: SummaryRow[] = []
function result (row: SummaryRow): void {
  summary.push(row)
  console.log(`  ${row.figure}: ${row.ours}${row.anchor != null ? `  (anchor ${row.anchor}${row.ratio != null ? `, ratio ${row.ratio}` : ''})` : ''}`)
}

async function waitUntil (what: string, check: () => Promise<boolean>, deadlineMs: number): Promise<void> {
  const deadline = Date.now() + deadlineMs
  while (Date.now() < deadline) {
    try { if (await check()) return } catch {}
    await new Promise(resolve => setTimeout(resolve, 200))
  }
  throw new Error(`timed out waiting for ${what}`)
}

async function connectedTo (api: ApiClient, ids: string[]): Promise<boolean> {
  const { peers } = await api.request<{ peers: Array<string | { peerId?: string, id?: string }> }>('GET', '/api/v0/peers')
  const have = new Set(peers.map(p => typeof p === 'string' ? p : (p.peerId ?? p.id ?? '')))
  return ids.every(id => have.has(id))
}

/** CPU seconds (user + system) process `pid` has used. */
function cpuSeconds (pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return (Number(fields[11]) + Number(fields[12])) / 100
}

/** Waits until every pid uses under SETTLE_CPU_CORES over one SETTLE_WINDOW_MS; seconds waited, or undefined past the deadline. */
async function settle (pids: number[]): Promise<number | undefined> {
  const t0 = performance.now()
  while (performance.now() - t0 < SETTLE_DEADLINE_MS) {
    const before = pids.map(cpuSeconds)
    await new Promise(resolve => setTimeout(resolve, SETTLE_WINDOW_MS))
    if (pids.every((pid, i) => (cpuSeconds(pid) - before[i]) * 1000 / SETTLE_WINDOW_MS < SETTLE_CPU_CORES)) return (performance.now() - t0) / 1000
  }
  return undefined
}

async function bytesServed (api: ApiClient): Promise<number> {
  return (await api.request<{ content: { bytesServed: number } }>('GET', '/api/v0/status')).content.bytesServed
}

/** What one fetch took: all of it, until the first bytes, and the rate from then to the end (progress lines). */
interface FetchTiming { seconds: number, firstBytesSeconds: number, steadyMiBps: number, peers: number }

/** Fetches `cid` through the API (as `peerverse get` does), timing it from the progress lines as they arrive. */
async function fetchTimed (api: ApiClient, cid: string, fileBytes: number): Promise<FetchTiming> {
  const t0 = performance.now()
  const res = await ApiClient.check(await api.raw('POST', '/api/v0/content/fetch', {
    body: JSON.stringify({ cid }), headers: { 'content-type': 'application/json' }, signal: AbortSignal.timeout(FETCH_DEADLINE_MS)
  }))
  let buf = ''
  let first: { at: number, bytes: number } | undefined
  let peers = 0
  let last: { done?: boolean, error?: string, message?: string, progress?: { bytes: number, peers: number } } = {}
  const decoder = new TextDecoder()
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buf += decoder.decode(chunk, { stream: true })
    let nl: number
    while ((nl = buf.indexOf('\n')) >= 0) {
      last = JSON.parse(buf.slice(0, nl))
      buf = buf.slice(nl + 1)
      const p = last.progress
      if (p != null) {
        peers = Math.max(peers, p.peers)
        if (first == null && p.bytes > 0) first = { at: performance.now(), bytes: p.bytes }
      }
    }
  }
  if (last.done !== true) throw new Error(`fetch failed: ${last.error ?? '?'} ${last.message ?? ''}`)
  const end = performance.now()
  const f = first ?? { at: t0, bytes: 0 }
  return {
    seconds: (end - t0) / 1000,
    firstBytesSeconds: (f.at - t0) / 1000,
    steadyMiBps: (fileBytes - f.bytes) / MiB / ((end - f.at) / 1000),
    peers
  }
}

async function benchSwarm (fileBytes: number): Promise<void> {
  const maxSeeders = Math.max(...SWARM_STEPS)
  const size = `${fileBytes / MiB} MiB`
  console.log(`\nswarm: ${size} from 1..${maxSeeders} seeders, each uplink capped at ${SEEDER_CAP_BYTES_PER_SECOND / MiB} MiB/s (tbf), downloader uncapped`)
  // Private addresses: this part measures links, not reachability (see the header).
  const tb = await Testbed.create({ publicHosts: maxSeeders + 1, homes: [], internet: 'private' })
  const peers: NsPeer[] = []
  try {
    const seederHosts = tb.internet.slice(0, maxSeeders)
    const downloaderHost: TbHost = tb.internet[maxSeeders]
    for (const h of seederHosts) await h.capEgress(SEEDER_CAP_BYTES_PER_SECOND)
    const file = Buffer.from(seededBytes(fileBytes, SEED))
    const seeders: NsPeer[] = []
    let genesis = ''
    let cid = ''
    const rates = new Map<number, number>()
    for (const k of SWARM_STEPS) {
      while (seeders.length < k) {
        const host = seederHosts[seeders.length]
        const chain = seeders.length === 0 ? ['--devnet'] : ['--genesis', genesis, '--bootstrap', seeders[0].addr]
        const s = await startNsPeer(host, ['--dht-mode', 'server', ...chain])
        peers.push(s)
        seeders.push(s)
        if (genesis === '') genesis = join(s.dataDir, 'genesis.json')
        const added = await (await ApiClient.check(await s.api.raw('POST', '/api/v0/content/add?name=swarm.bin', { body: file, headers: { 'content-type': 'application/octet-stream' } }))).json() as { cid: string }
        if (cid !== '' && added.cid !== cid) throw new Error(`seeders disagree on the CID: ${cid} / ${added.cid}`)
        cid = added.cid
        progress(`seeder ${seeders.length} on ${host.ip} holds ${cid}`)
      }
      const d = await startNsPeer(downloaderHost, ['--dht-mode', 'server', '--genesis', genesis, ...seeders.flatMap(s => ['--bootstrap', s.addr])],
        SWARM_LOG_DIR != null ? { env: { DEBUG: 'peerverse:swarm*,peerverse:content' } } : {})
      peers.push(d)
      try {
        await waitUntil(`the downloader to connect to ${k} seeders`, async () => await connectedTo(d.api, seeders.map(s => s.ready.peerId)), CONNECT_DEADLINE_MS)
        if (SETTLE) {
          const waited = await settle([d.pid, ...seeders.map(s => s.pid)])
          progress(waited != null ? `${k} seeder(s): peers settled ${fmt(waited)} s after connecting` : `${k} seeder(s): peers still busy after ${SETTLE_DEADLINE_MS / 1000} s; fetching anyway`)
        }
        const served0 = await Promise.all(seeders.map(async s => await bytesServed(s.api)))
        const cpu0 = cpuSeconds(d.pid)
        const timing = await fetchTimed(d.api, cid, fileBytes)
        const seconds = timing.seconds
        const cpu = cpuSeconds(d.pid) - cpu0
        const served = (await Promise.all(seeders.map(async s => await bytesServed(s.api)))).map((b, i) => b - served0[i])
        const total = served.reduce((a, b) => a + b, 0)
        progress(`${size}, ${k} seeder(s): ${fmt(seconds)} s (first bytes after ${fmt(timing.firstBytesSeconds, 2)} s, then ${fmt(timing.steadyMiBps)} MiB/s; up to ${timing.peers} holders); shares served ${served.map(b => `${fmt(100 * b / total, 0)}%`).join(' ')}; downloader CPU ${fmt(cpu / seconds, 2)} cores; load average ${loadavg()[0].toFixed(1)}`)
        const rate = fileBytes / MiB / seconds
        rates.set(k, rate)
        const ideal = k * SEEDER_CAP_BYTES_PER_SECOND / MiB
        const one = rates.get(1) ?? rate
        result({ figure: `swarm ${size}, ${k} capped seeder${k > 1 ? 's' : ''} -> 1: MiB/s (anchor: cap x seeders; ratio ours/ideal; ${fmt(rate / one, 2)}x one seeder)`, ours: fmt(rate), anchor: fmt(ideal), ratio: fmt(rate / ideal, 2) })
        result({ figure: `  the same after the first bytes: MiB/s (first bytes after ${fmt(timing.firstBytesSeconds, 2)} s)`, ours: fmt(timing.steadyMiBps), anchor: fmt(ideal), ratio: fmt(timing.steadyMiBps / ideal, 2) })
      } catch (err) {
        result({ figure: `swarm ${size}, ${k} capped seeders -> 1`, ours: `failed: ${(err as Error).message}` })
        progress(d.stderr().slice(-2000))
      } finally {
        await d.stop()
        if (SWARM_LOG_DIR != null) writeFileSync(join(SWARM_LOG_DIR, `swarm-${k}.log`), d.stderr())
      }
    }
    const four = rates.get(4)
    const one = rates.get(1)
    if (four != null && one != null) result({ figure: `swarm ${size} speed-up, 4 seeders over 1 (target at least 3.5x)`, ours: `${fmt(four / one, 2)}x`, anchor: '4.00x', ratio: fmt(four / one / 4, 2) })
  } finally {
    for (const p of peers) await p.kill().catch(() => {})
    await tb.destroy()
  }
}

/** Hole-punching tries per pair of NAT behaviours (BENCH_PUNCH_ATTEMPTS overrides, for a quick look). */
export const PUNCH_ATTEMPTS = Number(process.env.BENCH_PUNCH_ATTEMPTS ?? 20)
export const PUNCH_PAIRS: Array<[NatKind, NatKind]> = [['cone', 'cone'], ['cone', 'symmetric'], ['symmetric', 'symmetric']]
/** BENCH_PUNCH_PAIRS=cone+cone,... runs only the pairs named (for a quick look). */
const PUNCH_PAIRS_RUN = process.env.BENCH_PUNCH_PAIRS == null ? PUNCH_PAIRS : PUNCH_PAIRS.filter(([a, b]) => process.env.BENCH_PUNCH_PAIRS?.split(',').includes(`${a}+${b}`))
/** How long one try may take from the dial to a direct connection. */
const PUNCH_DEADLINE_MS = 30_000
/** How long a home peer may take to find it is behind NAT and hold a relay slot. */
const REACH_DEADLINE_MS = 60_000
/** BENCH_RELAY_LOG=<dir>: the relay part's two home peers log their swarm and dials there (relay-<host>.log). */
const RELAY_LOG_DIR = process.env.BENCH_RELAY_LOG
/** Repetitions of each relay-part fetch. */
export const RELAY_REPS = 3

function quantile (sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]
}

/** Waits until `p` is behind NAT with a relay slot; its relayed TCP address. */
async function relayedAddressOf (p: NsPeer): Promise<string> {
  let addr: string | undefined
  await waitUntil(`${p.host.name} behind NAT with a relay slot`, async () => {
    const s = await p.api.request<NodeStatus>('GET', '/api/v0/status')
    if (s.reach.reachability !== 'behind-nat' || s.reach.relays.length === 0) return false
    addr = s.reach.relayedAddresses.find(x => x.includes('/p2p-circuit') && !x.includes('/webrtc'))
    return addr != null
  }, REACH_DEADLINE_MS)
  return addr!
}

async function directTo (from: NsPeer, id: string): Promise<boolean> {
  const { peers } = await from.api.request<{ peers: PeerInfoView[] }>('GET', '/api/v0/peers')
  return peers.find(x => x.peerId === id)?.connections.some(c => c.direct) ?? false
}

/**
 * One try: a fresh peer in `home` (new identity) waits for its relay slot and dials `target`
 * through its relay; ms from their first connection (the dial, or earlier when they met through
 * the DHT) to a direct connection both sides see and a ping crosses, or undefined.
 */
async function punchOnce (home: TbHost, boot: NsPeer, target: NsPeer, targetAddr: string, peers: NsPeer[]): Promise<number | undefined> {
  const d = await startNsPeer(home, ['--listen', '/webrtc', '--devnet', '--bootstrap', boot.addr], PUNCH_LOG_DIR != null ? { env: { DEBUG: PUNCH_LOG_DEBUG } } : {})
  peers.push(d)
  let step = 'waiting for a relay slot'
  try {
    let met: number | undefined
    let dialed = false
    const reachDeadline = Date.now() + REACH_DEADLINE_MS
    let deadline = Infinity
    while (Date.now() < Math.min(deadline, reachDeadline + PUNCH_DEADLINE_MS)) {
      const { peers: seen } = await d.api.request<{ peers: PeerInfoView[] }>('GET', '/api/v0/peers')
      const conns = seen.find(x => x.peerId === target.ready.peerId)?.connections ?? []
      if (conns.length > 0 && met == null) {
        met = performance.now()
        metBeforeDial += dialed ? 0 : 1
        deadline = Date.now() + PUNCH_DEADLINE_MS
      }
      if (conns.some(c => c.direct) && await directTo(target, d.ready.peerId)) {
        const ms = performance.now() - (met ?? performance.now())
        step = 'ping over the direct connection'
        await d.api.request('POST', '/api/v0/ping', { target: target.ready.peerId })
        return ms
      }
      const s = await d.api.request<NodeStatus>('GET', '/api/v0/status')
      if (!dialed && s.reach.reachability === 'behind-nat' && s.reach.relays.length > 0) {
        dialed = true
        step = 'dialling through the relay'
        await d.api.request('POST', '/api/v0/connect', { address: targetAddr })
        met ??= performance.now()
        deadline = Math.min(deadline, Date.now() + PUNCH_DEADLINE_MS)
        step = 'waiting for a direct connection'
      }
      if (s.reach.upgrades.attempts > 0 && s.reach.upgrades.inProgress === 0 && s.reach.upgrades.failed > 0 && s.reach.upgrades.succeeded === 0) return undefined
      await new Promise(resolve => setTimeout(resolve, 100))
    }
    return undefined
  } catch (err) {
    progress(`try failed (${step}): ${(err as Error).name}: ${(err as Error).message ?? JSON.stringify(err)}`)
    if (PUNCH_LOG_DIR != null) writeFileSync(join(PUNCH_LOG_DIR, `punch-${d.ready.peerId}.log`), d.stderr())
    return undefined
  } finally {
    await d.kill()
    peers.splice(peers.indexOf(d), 1)
  }
}

/** BENCH_PUNCH_LOG=<dir>: a try's dialling peer logs its dials (PUNCH_LOG_DEBUG) there when the try fails with an error. */
const PUNCH_LOG_DIR = process.env.BENCH_PUNCH_LOG
const PUNCH_LOG_DEBUG = 'libp2p:connection-manager*,libp2p:circuit-relay*,libp2p:upgrader*,peerverse:reach*'

/** Tries of the current pair whose peers met through the DHT before the dial. */
let metBeforeDial = 0

async function benchPunch (): Promise<void> {
  console.log(`\npunch: ${PUNCH_ATTEMPTS} hole-punching tries per pair of NATs, on emulated NATs (nftables masquerade in network namespaces), not the real internet`)
  for (const [kindA, kindB] of PUNCH_PAIRS_RUN) {
    const label = `${kindA}+${kindB}`
    const tb = await Testbed.create({ publicHosts: 2, homes: [{ name: 'a', nat: kindA, hosts: 1 }, { name: 'b', nat: kindB, hosts: 1 }] })
    const peers: NsPeer[] = []
    try {
      const boot = await startNsPeer(tb.internet[0], ['--public', '--dht-mode', 'server', '--devnet'])
      peers.push(boot)
      const relay = await startNsPeer(tb.internet[1], ['--public', '--dht-mode', 'server', '--devnet', '--bootstrap', boot.addr])
      peers.push(relay)
      const a = await startNsPeer(tb.homes[0].hosts[0], ['--listen', '/webrtc', '--devnet', '--bootstrap', boot.addr])
      peers.push(a)
      const aAddr = await relayedAddressOf(a)
      const times: number[] = []
      metBeforeDial = 0
      for (let i = 0; i < PUNCH_ATTEMPTS; i++) {
        const ms = await punchOnce(tb.homes[1].hosts[0], boot, a, aAddr, peers)
        if (ms != null) times.push(ms)
        progress(`${label} try ${i + 1}: ${ms != null ? `direct after ${fmt(ms, 0)} ms` : 'no direct connection'}`)
      }
      times.sort((x, y) => x - y)
      const rate = 100 * times.length / PUNCH_ATTEMPTS
      result({ figure: `punch ${label}: successes / attempts (anchor: DCUtR on the real internet, 70% +- 7.1%, 4.4 M attempts, arXiv 2510.27500)`, ours: `${times.length}/${PUNCH_ATTEMPTS} (${fmt(rate, 0)}%)`, anchor: '70%', ratio: fmt(rate / 70, 2) })
      result({ figure: `  ${label}: first connection -> direct, ms p50 / p99 / max (${metBeforeDial} of ${PUNCH_ATTEMPTS} tries met through the DHT before the dial)`, ours: times.length === 0 ? 'n/a' : `${fmt(quantile(times, 0.5), 0)} / ${fmt(quantile(times, 0.99), 0)} / ${fmt(times.at(-1)!, 0)}` })
    } catch (err) {
      result({ figure: `punch ${label}`, ours: `not available: ${(err as Error).message}` })
    } finally {
      for (const p of peers) await p.kill().catch(() => {})
      await tb.destroy()
    }
  }
}

async function addBytes (p: NsPeer, bytes: Uint8Array, name: string): Promise<string> {
  const res = await ApiClient.check(await p.api.raw('POST', `/api/v0/content/add?name=${name}`, { body: bytes as unknown as BodyInit, headers: { 'content-type': 'application/octet-stream' } }))
  return (await res.json() as { cid: string }).cid
}

/** p50 MiB/s of RELAY_REPS fetches of fresh RELAYED_CONTENT_MAX_BYTES files from `from` to `to`. */
async function fetchRate (from: NsPeer, to: NsPeer, seed: number): Promise<number> {
  const rates: number[] = []
  for (let i = 0; i < RELAY_REPS; i++) {
    const cid = await addBytes(from, seededBytes(RELAYED_CONTENT_MAX_BYTES, seed + i), `relay-${seed + i}.bin`)
    const { seconds } = await fetchTimed(to.api, cid, RELAYED_CONTENT_MAX_BYTES)
    rates.push(RELAYED_CONTENT_MAX_BYTES / MiB / seconds)
  }
  rates.sort((x, y) => x - y)
  return quantile(rates, 0.5)
}

async function benchRelay (): Promise<void> {
  console.log(`\nrelay: ${RELAYED_CONTENT_MAX_BYTES / MiB} MiB (RELAYED_CONTENT_MAX_BYTES) 1 -> 1, each way, directly and through a relay; p50 of ${RELAY_REPS}`)
  const tb = await Testbed.create({ publicHosts: 4, homes: [{ name: 'a', nat: 'cone', hosts: 1 }, { name: 'b', nat: 'cone', hosts: 1 }] })
  const peers: NsPeer[] = []
  try {
    const relay = await startNsPeer(tb.internet[0], ['--public', '--dht-mode', 'server', '--devnet'])
    peers.push(relay)
    const x = await startNsPeer(tb.internet[1], ['--public', '--dht-mode', 'server', '--devnet', '--bootstrap', relay.addr])
    peers.push(x)
    const y = await startNsPeer(tb.internet[2], ['--public', '--dht-mode', 'server', '--devnet', '--bootstrap', x.addr])
    peers.push(y)
    // Without WebRTC, the homes' connection stays on the relay.
    const [a, b] = await Promise.all(tb.homes.map(async h => {
      const p = await startNsPeer(h.hosts[0], ['--no-webrtc', '--devnet', '--bootstrap', relay.addr], RELAY_LOG_DIR != null ? { env: { DEBUG: 'peerverse:swarm*,libp2p:connection-manager*' } } : {})
      peers.push(p)
      return p
    }))
    const [aAddr] = await Promise.all([relayedAddressOf(a), relayedAddressOf(b)])
    await b.api.request('POST', '/api/v0/connect', { address: aAddr })
    await waitUntil('y connected to x', async () => await connectedTo(y.api, [x.ready.peerId]), CONNECT_DEADLINE_MS)
    const direct = [await fetchRate(x, y, 3001), await fetchRate(y, x, 3101)]
    const relayed = [await fetchRate(a, b, 3201), await fetchRate(b, a, 3301)]
    if (await directTo(b, a.ready.peerId)) throw new Error('the homes hold a direct connection: the relayed figure would not be relayed')
    for (const [i, way] of ['a -> b', 'b -> a'].entries()) {
      result({ figure: `relay 1 -> 1 ${way}: MiB/s through the relay (anchor: the same directly; ratio relayed/direct)`, ours: fmt(relayed[i]), anchor: fmt(direct[i]), ratio: fmt(relayed[i] / direct[i], 2) })
    }
  } catch (err) {
    result({ figure: 'relay 1 -> 1', ours: `not available: ${(err as Error).message}` })
  } finally {
    if (RELAY_LOG_DIR != null) for (const p of peers) writeFileSync(join(RELAY_LOG_DIR, `relay-${p.host.name}.log`), p.stderr())
    for (const p of peers) await p.kill().catch(() => {})
    await tb.destroy()
  }
}

async function main (): Promise<void> {
  const started = performance.now()
  console.log(`peerverse bench:nat  seed ${SEED}  node ${process.version}  network-namespace testbed`)
  const reason = await testbedUnavailable()
  if (reason != null) {
    console.log(`skipped: ${reason}`)
    return
  }
  const named = process.argv.slice(2)
  const part = (name: string): boolean => named.length === 0 || named.includes(name)
  if (part('swarm')) for (const bytes of SWARM_FILE_SIZES) await benchSwarm(bytes)
  if (part('punch')) await benchPunch()
  if (part('relay')) await benchRelay()
  printSummary(summary)
  console.log(`\ntotal ${fmt((performance.now() - started) / 1000)} s`)
}

await main()
