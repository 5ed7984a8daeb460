/**
 * Directory benchmark: how long a listing takes to reach every peer of a 50-peer swarm (one
 * process, loopback TCP, each peer dialling peer 0 and two random earlier ones), against an anchor
 * measured in the same run over the same swarm: a plain gossip message of the same size on a topic
 * of its own. The difference is the directory's own cost: signing the listing, and on every peer
 * the proof-of-work hash, two signature checks (the listing's and the space descriptor's) and the
 * book. Rounds alternate anchor and listing; each listing round republishes the same space with a
 * new sequence number. It prints figures and asserts nothing.
 *
 * `directoryPropagation(nets)` runs the measurement over a swarm the caller built (bench:net), and
 * running this file builds its own. Everything random comes from BENCH_SEED (default 1).
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { performance } from 'node:perf_hooks'
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { directory, DIRECTORY_TOPIC, GOSSIP_RECORDS_PER_PEER_PER_SECOND, type DirectoryService } from '../src/directory/index.ts'
import { didFromPublicKey } from '../src/identity/did.ts'
import { ed25519KeyFromSeed } from '../src/identity/ed25519.ts'
import { libp2pGossip, libp2pProtocols, libp2pRouting, type Libp2pGossip } from '../src/net/libp2p-ports.ts'
import { createNetwork, type Network } from '../src/net/network.ts'
import { createDescriptor } from '../src/space/records.ts'
import { Store } from '../src/store/store.ts'
import { printSummary, seeded, type SummaryRow } from './lib.ts'

const PEERS = 50
const RANDOM_DIALS_PER_PEER = 2
/** Rounds of each kind (anchor, listing), alternating. */
const ROUNDS = 20
/** Each round waits for every peer (or this long) before the next. */
const ROUND_TIMEOUT_MS = 10_000
/** Every peer must see this many subscribers of both topics before the rounds start (or the deadline passes). */
const MESH_TARGET = 4
const MESH_DEADLINE_MS = 30_000
/** Listings are published no faster than receivers' per-peer rate limit allows (with a margin). */
const LISTING_GAP_MS = Math.ceil(1000 / GOSSIP_RECORDS_PER_PEER_PER_SECOND * 1.2)
const ANCHOR_TOPIC = 'peerverse/bench/directory-anchor/1'
const SEED = Number(process.env.BENCH_SEED ?? 1)

const progress = (line: string): void => { process.stderr.write(`[bench] ${line}\n`) }
const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }
const fmt = (v: number, digits = 1): string => Number.isFinite(v) ? v.toFixed(digits) : 'n/a'

function percentile (values: number[], p: number): number {
  if (values.length === 0) return NaN
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length, Math.max(1, Math.ceil(p / 100 * sorted.length))) - 1]
}

async function waitUntil (ready: () => boolean, deadlineMs: number): Promise<boolean> {
  const end = performance.now() + deadlineMs
  while (!ready()) {
    if (performance.now() > end) return false
    await sleep(50)
  }
  return true
}

interface Peer { net: Network, gossip: Libp2pGossip, dir: DirectoryService }

/** One round: resolves with each receiving peer's delay (ms) from `start`; peers that miss the timeout are left out. */
async function round (receivers: number, arm: (deliver: (i: number) => void) => () => void, send: () => Promise<void>): Promise<{ delays: number[], missed: number }> {
  const delays: number[] = []
  const seen = new Set<number>()
  let start = 0
  let done: () => void = () => {}
  const all = new Promise<void>(resolve => { done = resolve })
  const disarm = arm(i => {
    if (seen.has(i)) return
    seen.add(i)
    delays.push(performance.now() - start)
    if (seen.size === receivers) done()
  })
  start = performance.now()
  await send()
  await Promise.race([all, sleep(ROUND_TIMEOUT_MS)])
  disarm()
  return { delays, missed: receivers - seen.size }
}

/** Measures listing propagation against same-size gossip over `nets` (peer 0 publishes). */
export async function directoryPropagation (nets: Network[], options: { dataDir?: string } = {}): Promise<SummaryRow[]> {
  const rand = seeded(SEED + 7)
  const dir = options.dataDir ?? await mkdtemp(join(tmpdir(), 'peerverse-bench-directory-'))
  const store = await Store.open(dir)
  const peers: Peer[] = []
  try {
    const ownerKey = ed25519KeyFromSeed(rand.bytes(32))
    const space = await createDescriptor(ownerKey, { name: 'Bench plaza', created: 1_700_000_000_000 })
    for (let i = 0; i < nets.length; i++) {
      const key = i === 0 ? ownerKey : ed25519KeyFromSeed(rand.bytes(32))
      const gossip = libp2pGossip(nets[i])
      const d = directory()({
        gossip,
        protocols: libp2pProtocols(nets[i]),
        routing: libp2pRouting(nets[i]),
        onRejected: () => {},
        identity: { did: didFromPublicKey(key.publicKey), key },
        store: store.sublevel(`directory-${i}`),
        spaces: i === 0 ? { descriptor: id => id === space.id ? space.bytes : undefined, present: id => id === space.id ? 1 : undefined } : { descriptor: () => undefined, present: () => undefined },
        social: { isBlocked: () => false }
      })
      await d.start()
      peers.push({ net: nets[i], gossip, dir: d })
    }
    const anchorHandlers = new Set<(i: number) => void>()
    const unsubs = peers.map((p, i) => p.gossip.subscribe(ANCHOR_TOPIC, () => { for (const h of anchorHandlers) h(i) }))
    const meshed = await waitUntil(() => peers.every(p => p.gossip.subscribers(DIRECTORY_TOPIC).length >= MESH_TARGET && p.gossip.subscribers(ANCHOR_TOPIC).length >= MESH_TARGET), MESH_DEADLINE_MS)
    progress(`subscribers: every peer sees ${MESH_TARGET}+ on both topics: ${meshed ? 'yes' : 'no (deadline passed)'}`)
    // The owner's proof of work is paid once, before the rounds.
    const t0 = performance.now()
    const first = await peers[0].dir.publish(space.id, { description: 'x'.repeat(200), tags: ['bench'] })
    progress(`first publish (proof of work solved once per identity): ${fmt(performance.now() - t0)} ms`)
    await waitUntil(() => peers.every(p => p.dir.book.get(space.id) != null), ROUND_TIMEOUT_MS)
    const size = peers[0].dir.book.get(first.space)?.bytes.length ?? 0
    progress(`listing: ${size} bytes`)

    const listingDelays: number[] = []
    const anchorDelays: number[] = []
    /** Per round, the time until the last peer had it (rounds where every peer had it). */
    const listingAll: number[] = []
    const anchorAll: number[] = []
    let listingMissed = 0
    let anchorMissed = 0
    const receivers = peers.length - 1
    let lastListing = performance.now()
    for (let r = 0; r < ROUNDS; r++) {
      const a = await round(receivers, deliver => {
        const h = (i: number): void => { if (i !== 0) deliver(i) }
        anchorHandlers.add(h)
        return () => { anchorHandlers.delete(h) }
      }, async () => { await peers[0].gossip.publish(ANCHOR_TOPIC, rand.bytes(size)) })
      anchorDelays.push(...a.delays)
      anchorMissed += a.missed
      if (a.missed === 0) anchorAll.push(Math.max(...a.delays))
      await sleep(Math.max(0, lastListing + LISTING_GAP_MS - performance.now()))
      lastListing = performance.now()
      const l = await round(receivers, deliver => {
        const offs = peers.slice(1).map((p, k) => {
          const h = (evt: CustomEvent<{ space: string }>): void => { if (evt.detail.space === space.id) deliver(k + 1) }
          p.dir.addEventListener('directory:listing', h)
          return () => { p.dir.removeEventListener('directory:listing', h) }
        })
        return () => { for (const off of offs) off() }
      }, async () => { await peers[0].dir.publish(space.id, { description: 'x'.repeat(200), tags: ['bench'] }) })
      listingDelays.push(...l.delays)
      listingMissed += l.missed
      if (l.missed === 0) listingAll.push(Math.max(...l.delays))
      progress(`round ${r + 1}/${ROUNDS}: anchor max ${fmt(Math.max(...a.delays))} ms, listing max ${fmt(Math.max(...l.delays))} ms`)
    }
    for (const u of unsubs) u()
    const row = (what: string, ours: number, anchor: number): SummaryRow =>
      ({ figure: `directory listing ${what} (ms; anchor: plain gossip of the same ${size} bytes)`, ours: fmt(ours), anchor: fmt(anchor), ratio: fmt(ours / anchor, 2) })
    const rows = [
      row(`delay to one peer, p50 over ${ROUNDS} rounds x ${receivers} peers`, percentile(listingDelays, 50), percentile(anchorDelays, 50)),
      row('delay to one peer, p99', percentile(listingDelays, 99), percentile(anchorDelays, 99)),
      row('delay to one peer, max', Math.max(...listingDelays), Math.max(...anchorDelays)),
      row(`time until all ${receivers} peers have it, p50 of the rounds all got (${listingAll.length} and ${anchorAll.length} of ${ROUNDS})`, percentile(listingAll, 50), percentile(anchorAll, 50)),
      row('time until all peers have it, p99', percentile(listingAll, 99), percentile(anchorAll, 99)),
      row('time until all peers have it, max', Math.max(...listingAll), Math.max(...anchorAll))
    ]
    rows.push({ figure: `deliveries missed (of ${ROUNDS * receivers} each)`, ours: String(listingMissed), anchor: String(anchorMissed) })
    return rows
  } finally {
    for (const p of peers) {
      await p.dir.stop().catch(() => {})
      p.gossip.close()
    }
    await store.close()
    if (options.dataDir == null) await rm(dir, { recursive: true, force: true })
  }
}

async function buildSwarm (): Promise<Network[]> {
  const rand = seeded(SEED)
  progress(`swarm: ${PEERS} peers over loopback TCP`)
  const nets: Network[] = []
  for (let i = 0; i < PEERS; i++) {
    const net = await createNetwork({ privateKey: await generateKeyPairFromSeed('Ed25519', rand.bytes(32)), listen: ['/ip4/127.0.0.1/tcp/0'], dhtMode: 'server', relayServer: false })
    await net.start()
    const targets = new Set<number>()
    if (i > 0) targets.add(0)
    for (let k = 0; k < RANDOM_DIALS_PER_PEER && i > 1; k++) targets.add(1 + rand.int(i - 1))
    // Under load a handshake can time out: one more try, then the peer goes on with the dials that worked.
    await Promise.all([...targets].map(async t => {
      await net.dial(nets[t].getMultiaddrs()).catch(async () => net.dial(nets[t].getMultiaddrs())).catch(err => { progress(`peer ${i} -> ${t}: ${(err as Error).message}`) })
    }))
    nets.push(net)
  }
  return nets
}

if (process.argv[1] != null && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const nets = await buildSwarm()
  try {
    const rows = await directoryPropagation(nets)
    for (const r of rows) console.log(`${r.figure}: ${r.ours}   anchor ${r.anchor ?? '-'}   ratio ${r.ratio ?? '-'}`)
    printSummary(rows)
  } finally {
    await Promise.all(nets.map(async n => { try { await n.stop() } catch {} }))
  }
}
