/**
 * Node-only. `npm run bench:nat`: Peerverse on the network-namespace testbed (testbed/), with real
 * `peerverse start` processes and links that have real limits. Needs root; without it (or without
 * namespaces, nftables, tbf) it prints why and exits 0. Printed, not asserted.
 *
 * Parts, run in turn (`node bench/nat.ts [swarm]` runs only those named), each adding rows to the
 * shared summary:
 *   swarm  seeders on the internet, each uplink capped with tbf at SEEDER_CAP_BYTES_PER_SECOND;
 *          one downloader with an uncapped link fetches the same SWARM_FILE_BYTES from 1, 2 and 4
 *          of them (a fresh downloader each time; only the seeders of a step run). BitTorrent's
 *          premise: 4 capped seeders give close to 4x one. It runs on the testbed's private
 *          internet: on public addresses, a peer's AutoNAT request makes the server dial back,
 *          libp2p hands it the existing connection, and the server closes that connection.
 */
import { ApiClient } from '../src/api/client.ts'
import { Testbed, testbedUnavailable, type TbHost } from '../testbed/testbed.ts'
import { startNsPeer, type NsPeer } from '../testbed/peer.ts'
import { printSummary, seededBytes, type SummaryRow } from './lib.ts'
import { join } from 'node:path'
import { readFileSync, writeFileSync } from 'node:fs'
import { loadavg } from 'node:os'

const MiB = 1024 * 1024
/** Each seeder's upload cap. */
export const SEEDER_CAP_BYTES_PER_SECOND = 8 * MiB
export const SWARM_FILE_BYTES = 64 * MiB
export const SWARM_STEPS = [1, 2, 4]
/** How long the downloader may take to connect to a step's seeders, and to fetch. */
const CONNECT_DEADLINE_MS = 60_000
const FETCH_DEADLINE_MS = 10 * 60_000
const SEED = Number(process.env.BENCH_SEED ?? 1)
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

async function bytesServed (api: ApiClient): Promise<number> {
  return (await api.request<{ content: { bytesServed: number } }>('GET', '/api/v0/status')).content.bytesServed
}

/** What one fetch took: all of it, until the first bytes, and the rate from then to the end (progress lines). */
interface FetchTiming { seconds: number, firstBytesSeconds: number, steadyMiBps: number, peers: number }

/** Fetches `cid` through the API (as `peerverse get` does), timing it from the progress lines as they arrive. */
async function fetchTimed (api: ApiClient, cid: string): Promise<FetchTiming> {
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
    steadyMiBps: (SWARM_FILE_BYTES - f.bytes) / MiB / ((end - f.at) / 1000),
    peers
  }
}

async function benchSwarm (): Promise<void> {
  const maxSeeders = Math.max(...SWARM_STEPS)
  console.log(`\nswarm: ${SWARM_FILE_BYTES / MiB} MiB from 1..${maxSeeders} seeders, each uplink capped at ${SEEDER_CAP_BYTES_PER_SECOND / MiB} MiB/s (tbf), downloader uncapped`)
  // Private addresses: this part measures links, not reachability (see the header).
  const tb = await Testbed.create({ publicHosts: maxSeeders + 1, homes: [], internet: 'private' })
  const peers: NsPeer[] = []
  try {
    const seederHosts = tb.internet.slice(0, maxSeeders)
    const downloaderHost: TbHost = tb.internet[maxSeeders]
    for (const h of seederHosts) await h.capEgress(SEEDER_CAP_BYTES_PER_SECOND)
    const file = Buffer.from(seededBytes(SWARM_FILE_BYTES, SEED))
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
        const served0 = await Promise.all(seeders.map(async s => await bytesServed(s.api)))
        const cpu0 = cpuSeconds(d.pid)
        const timing = await fetchTimed(d.api, cid)
        const seconds = timing.seconds
        const cpu = cpuSeconds(d.pid) - cpu0
        const served = (await Promise.all(seeders.map(async s => await bytesServed(s.api)))).map((b, i) => b - served0[i])
        const total = served.reduce((a, b) => a + b, 0)
        progress(`${k} seeder(s): ${fmt(seconds)} s (first bytes after ${fmt(timing.firstBytesSeconds, 2)} s, then ${fmt(timing.steadyMiBps)} MiB/s; up to ${timing.peers} holders); shares served ${served.map(b => `${fmt(100 * b / total, 0)}%`).join(' ')}; downloader CPU ${fmt(cpu / seconds, 2)} cores; load average ${loadavg()[0].toFixed(1)}`)
        const rate = SWARM_FILE_BYTES / MiB / seconds
        rates.set(k, rate)
        const ideal = k * SEEDER_CAP_BYTES_PER_SECOND / MiB
        const one = rates.get(1) ?? rate
        result({ figure: `swarm ${k} capped seeder${k > 1 ? 's' : ''} -> 1: MiB/s (anchor: cap x seeders; ratio ours/ideal; ${fmt(rate / one, 2)}x one seeder)`, ours: fmt(rate), anchor: fmt(ideal), ratio: fmt(rate / ideal, 2) })
        result({ figure: `  the same after the first bytes: MiB/s (first bytes after ${fmt(timing.firstBytesSeconds, 2)} s)`, ours: fmt(timing.steadyMiBps), anchor: fmt(ideal), ratio: fmt(timing.steadyMiBps / ideal, 2) })
      } catch (err) {
        result({ figure: `swarm ${k} capped seeders -> 1`, ours: `failed: ${(err as Error).message}` })
        progress(d.stderr().slice(-2000))
      } finally {
        await d.stop()
        if (SWARM_LOG_DIR != null) writeFileSync(join(SWARM_LOG_DIR, `swarm-${k}.log`), d.stderr())
      }
    }
    const four = rates.get(4)
    const one = rates.get(1)
    if (four != null && one != null) result({ figure: 'swarm speed-up, 4 seeders over 1 (target at least 3.5x)', ours: `${fmt(four / one, 2)}x`, anchor: '4.00x', ratio: fmt(four / one / 4, 2) })
  } finally {
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
  if (part('swarm')) await benchSwarm()
  printSummary(summary)
  console.log(`\ntotal ${fmt((performance.now() - started) / 1000)} s`)
}

await main()
