/**
 * Social benchmark: how fast signed feeds (src/social) move between real nodes on one machine,
 * with this machine's Ed25519 verification rate, measured in the same run, as the anchor. It prints
 * figures and asserts nothing.
 *
 * 1. Catch-up: an author holds a 10,000-entry feed; a follower that holds none of it connects and
 *    pulls it all over /peerverse/feeds/1.0.0 (every entry decoded, signature-checked, linked and
 *    stored). Entries per second, from the connection to the last entry stored, against two
 *    anchors run on the same entries: decodeEntry (decode + canonical check + verify + CID, the
 *    least any honest puller must do per entry) and bare ed25519Verify (the crypto ceiling).
 *    Both nodes share this process, so the figure also carries the serving side's CPU.
 * 2. Live push: an author and its followers (full nodes in one process over loopback TCP, each
 *    follower dialled to the author and a few seeded random others) wait until the author sees
 *    every follower on its feed topic and the swarm has settled for 30 s (a node's discovery
 *    dials more peers in its first minute); then the author posts 100 times, 100 ms apart, and each
 *    follower's 'feed:entry' event for each post is timed from the author's post() call. All the
 *    nodes share one event loop on this machine's cores, so the latencies are mostly the swarm's
 *    summed CPU time; the CPU printed beside them says how much. Two counters say how often a
 *    follower got a post before its predecessor (SequenceGapError) and how many of the pulls such
 *    a gap asks for were skipped because a pull from that peer was already running.
 *
 * Everything random comes from one seeded PRNG (BENCH_SEED, default 1): user and peer keys (the
 * identity files are written before each node first opens its data dir), post texts and the
 * swarm's shape. BENCH_FOLLOWERS sets the number of followers. The issue asks for 50, but 51 full
 * nodes overload one event loop on a 2-core machine (startup of minutes, a feed topic that never
 * fully forms, posts lost), so the default is 20, where every post still arrives;
 * BENCH_FOLLOWERS=50 gives the issue's figure on a machine that holds it.
 * Results go to stdout, progress to stderr. Data dirs are temporary and removed at the end.
 */
import * as dagCbor from '@ipld/dag-cbor'
import { generateKeyPairFromSeed, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type * as NodeCrypto from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createRequire, syncBuiltinESMExports } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { didFromPublicKey, publicKeyFromDid } from '../src/identity/did.ts'
import { ed25519KeyFromSeed, ed25519Verify } from '../src/identity/ed25519.ts'
import { PEER_KEY_FILE, USER_KEY_FILE } from '../src/identity/keystore.ts'
import { defaultConfig, mergeConfig } from '../src/node/config.ts'
import { createNode, type FeedEntryEvent, type PeerverseNode } from '../src/node/node.ts'
import { createEntry, decodeEntry, type FeedHead } from '../src/social/feed.ts'
import { feedTopic, SocialService } from '../src/social/service.ts'
import { seeded, printSummary, type SummaryRow } from './lib.ts'

/** Part 1: entries in the author's feed, and how long the catch-up may take before we give up. */
const FEED_ENTRIES = 10_000
const CATCH_UP_TIMEOUT_MS = 300_000
/** Anchor runs over all entries (median reported). */
const ANCHOR_RUNS = 3
/** Post texts are this many characters (seeded uniform). */
const TEXT_MIN_CHARS = 40
const TEXT_MAX_CHARS = 280

/** Part 2: followers, and how many random earlier followers each one dials besides the author. */
const FOLLOWERS = Number(process.env.BENCH_FOLLOWERS ?? 20)
const RANDOM_DIALS_PER_FOLLOWER = 3
const DIAL_ATTEMPTS = 5
/** Before posting: the author must see every follower on its topic, and followers a mesh of this many. */
const MESH_TARGET = 4
const TOPIC_DEADLINE_MS = 60_000
/**
 * Once the topic has formed, the swarm settles this long before measuring (each node's discovery
 * walks dial more peers for its first ~45 s, a CPU burst that would otherwise land on the posts);
 * then the idle background CPU is sampled over the next window.
 */
const SETTLE_MS = 30_000
const SETTLE_WINDOW_MS = 5_000
const IDLE_SAMPLE_MS = 10_000
const POSTS = 100
/** Start-to-start gap between posts. */
const POST_GAP_MS = 100
/** After the last post, stop waiting once this long passes with no delivery (or the deadline). */
const DELIVERY_QUIET_MS = 3_000
const DELIVERY_DEADLINE_MS = 60_000
/** Event loop utilisation above which the idle swarm alone is said to saturate the loop. */
const SATURATED_ELU = 0.9

const SEED = Number(process.env.BENCH_SEED ?? 1)

// ---------------------------------------------------------------------------------------------
// small helpers

const rand = seeded(SEED)

const WORDS = ['peer', 'mesh', 'feed', 'space', 'avatar', 'world', 'signal', 'node', 'light', 'river', 'stone', 'garden',
  'music', 'tonight', 'build', 'open', 'shared', 'quiet', 'north', 'market', 'dream', 'river', 'glass', 'orbit']

/** A seeded post text of TEXT_MIN_CHARS..TEXT_MAX_CHARS characters. */
function postText (): string {
  const length = TEXT_MIN_CHARS + rand.int(TEXT_MAX_CHARS - TEXT_MIN_CHARS + 1)
  let s = ''
  while (s.length < length) s += (s === '' ? '' : ' ') + WORDS[rand.int(WORDS.length)]
  return s.slice(0, length)
}

const progress = (line: string): void => { process.stderr.write(`[bench] ${line}\n`) }
const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

/** Polls `ready` every `everyMs` until it holds or `deadlineMs` passes; returns whether it held. */
async function waitFor (ready: () => boolean, deadlineMs: number, everyMs = 50): Promise<boolean> {
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

/** Process CPU and wall time, read as differences around a window. */
interface Meter { t: number, cpu: NodeJS.CpuUsage, elu: ReturnType<typeof performance.eventLoopUtilization> }
const meter = (): Meter => ({ t: performance.now(), cpu: process.cpuUsage(), elu: performance.eventLoopUtilization() })
function measured (m: Meter): { ms: number, cpuMs: number, elu: number } {
  const cpu = process.cpuUsage(m.cpu)
  return { ms: performance.now() - m.t, cpuMs: (cpu.user + cpu.system) / 1000, elu: performance.eventLoopUtilization(m.elu).utilization }
}

// Count the Ed25519 verifications of signed records (src/identity/record.ts signs a domain tag
// followed by the record): ed25519.ts calls node:crypto's verify, so the CommonJS export is
// wrapped and the ES bindings re-synced. Noise and libp2p's own signatures lack the tag and are
// not counted. Bench-only instrumentation; the check costs a 20-byte compare per call.
const RECORD_DOMAIN = new TextEncoder().encode('peerverse/record/v1\n')
let recordVerifies = 0
{
  const crypto = createRequire(import.meta.url)('node:crypto') as typeof NodeCrypto
  const original = crypto.verify
  crypto.verify = function (this: unknown, ...args: unknown[]) {
    const data = args[1]
    if (data instanceof Uint8Array && data.length >= RECORD_DOMAIN.length && Buffer.compare(data.subarray(0, RECORD_DOMAIN.length), RECORD_DOMAIN) === 0) recordVerifies++
    return (original as (...a: unknown[]) => unknown).apply(this, args)
  } as typeof crypto.verify
  syncBuiltinESMExports()
}

/** Gossip entries that arrived past a gap, and pulls skipped because one from that peer was running. */
const socialCount = { gaps: 0, skipped: 0, counted: false }

/**
 * Counts, across all nodes, SequenceGapError out of SocialService#ingest (a gossip entry whose
 * predecessor we lack) and SocialService#syncWith calls that return at once because a pull from
 * that peer is already running. Patched on the shared prototype; bench-only instrumentation.
 */
function instrumentSocial (): void {
  const proto = SocialService.prototype as unknown as {
    ingest?: (...args: unknown[]) => Promise<unknown>
    syncWith?: (peer: { toString: () => string }) => Promise<number>
  }
  const ingest = proto.ingest
  const syncWith = proto.syncWith
  if (typeof ingest !== 'function' || typeof syncWith !== 'function') return
  proto.ingest = async function (this: unknown, ...args: unknown[]): Promise<unknown> {
    try {
      return await ingest.apply(this, args)
    } catch (err) {
      if ((err as Error).name === 'SequenceGapError') socialCount.gaps++
      throw err
    }
  }
  proto.syncWith = async function (this: { syncing?: unknown }, peer: { toString: () => string }): Promise<number> {
    if (this.syncing instanceof Set && this.syncing.has(peer.toString())) socialCount.skipped++
    return await syncWith.call(this, peer)
  }
  socialCount.counted = true
}

// ---------------------------------------------------------------------------------------------
// nodes

const nodes: PeerverseNode[] = []
const dirs: string[] = []

/** Writes seeded identity files into a fresh data dir, so initIdentity loads them instead of making new ones. */
async function seededDataDir (): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'peerverse-bench-social-'))
  dirs.push(dir)
  const userKey = ed25519KeyFromSeed(rand.bytes(32))
  const file = { version: 1, type: 'ed25519', did: didFromPublicKey(userKey.publicKey), seed: Buffer.from(userKey.seed).toString('base64') }
  await writeFile(join(dir, USER_KEY_FILE), JSON.stringify(file, null, 2) + '\n', { mode: 0o600 })
  const peerKey = await generateKeyPairFromSeed('Ed25519', rand.bytes(32))
  await writeFile(join(dir, PEER_KEY_FILE), privateKeyToProtobuf(peerKey), { mode: 0o600 })
  return dir
}

async function startNode (): Promise<PeerverseNode> {
  const dir = await seededDataDir()
  const node = await createNode(mergeConfig(defaultConfig(dir), {
    discovery: { mdns: false },
    listen: ['/ip4/127.0.0.1/tcp/0'],
    api: false,
    dht: { mode: 'server' },
    relay: { server: false }
  }))
  nodes.push(node)
  await node.start()
  return node
}

async function stopNodes (list: PeerverseNode[]): Promise<void> {
  await Promise.all(list.map(async n => { await n.stop().catch((err: Error) => { progress(`stop failed: ${err.message}`) }) }))
}

/** Dials `to` from `from`, retrying (one host's inbound connection rate is limited). */
async function dial (from: PeerverseNode, to: PeerverseNode): Promise<boolean> {
  for (let attempt = 1; attempt <= DIAL_ATTEMPTS; attempt++) {
    try {
      await from.connect(to.addresses()[0])
      return true
    } catch (err) {
      if (attempt === DIAL_ATTEMPTS) progress(`dial failed: ${(err as Error).message}`)
      await sleep(200 * attempt)
    }
  }
  return false
}

let rejected = 0
const rejectedKinds = new Map<string, number>()
function countRejections (node: PeerverseNode): void {
  node.addEventListener('peer:rejected', evt => {
    rejected++
    const kind = `${evt.detail.protocol} ${evt.detail.error.split(':')[0]}`
    rejectedKinds.set(kind, (rejectedKinds.get(kind) ?? 0) + 1)
  })
}

// ---------------------------------------------------------------------------------------------
// 1. catch-up on one feed

/** Signs FEED_ENTRIES posts into the author's own feed, straight into its store (no fsync per entry). */
async function writeFeed (author: PeerverseNode): Promise<Uint8Array[]> {
  const store = author.social.store
  let head: FeedHead | null = await store.head(author.did)
  const bytes: Uint8Array[] = []
  const start = Date.now() - FEED_ENTRIES * 1000
  const t0 = performance.now()
  for (let i = 0; i < FEED_ENTRIES; i++) {
    const entry = await createEntry(author.identity.userKey, head, 'post', { text: postText() }, start + i * 1000)
    await store.append(entry)
    head = { seq: entry.payload.seq, id: entry.id, ts: entry.payload.ts }
    bytes.push(entry.bytes)
  }
  const ms = performance.now() - t0
  const size = bytes.reduce((n, b) => n + b.length, 0)
  progress(`catch-up: author signed and stored ${FEED_ENTRIES} entries in ${fmt(ms / 1000, 2)} s (${fmt(FEED_ENTRIES / (ms / 1000), 0)}/s), ${fmt(size / FEED_ENTRIES, 0)} B each on average`)
  return bytes
}

interface CatchUp { seconds: number, stored: number, cpuMs: number, elu: number, verifies: number, pulls: number }

/** The follower connects to the author and pulls until it holds the whole feed. */
async function catchUp (author: PeerverseNode, follower: PeerverseNode): Promise<CatchUp> {
  let stored = 0
  let finish: () => void = () => {}
  const done = new Promise<void>(resolve => { finish = resolve })
  follower.addEventListener('feed:entry', evt => {
    if (evt.detail.author !== author.did) return
    stored++
    if (evt.detail.seq >= FEED_ENTRIES) finish()
  })
  // Following while unconnected: nothing to pull yet, so the pull below starts from zero.
  await follower.social.follow(author.did)
  await dial(follower, author)
  const verifies0 = recordVerifies
  const m = meter()
  // The follower also pulls by itself when identify completes; syncWith returns 0 at once while
  // a pull from that peer is already running, so this loop only keeps one going until the end.
  let finished = false
  let pulls = 0
  const kick = (async () => {
    while (!finished) {
      pulls++
      const n = await follower.social.syncWith(author.net.peerId).catch(() => 0)
      if (!finished && n === 0) await sleep(5)
    }
  })()
  let timer: ReturnType<typeof setTimeout> | undefined
  await Promise.race([done, new Promise<void>(resolve => { timer = setTimeout(resolve, CATCH_UP_TIMEOUT_MS) })])
  clearTimeout(timer)
  const w = measured(m)
  finished = true
  await kick
  return { seconds: w.ms / 1000, stored, cpuMs: w.cpuMs, elu: w.elu, verifies: recordVerifies - verifies0, pulls }
}

/** Entries per second of decodeEntry over all the bytes, median of ANCHOR_RUNS. */
async function anchorDecode (bytes: Uint8Array[]): Promise<number> {
  const rates: number[] = []
  for (let run = 0; run < ANCHOR_RUNS; run++) {
    const t0 = performance.now()
    for (const b of bytes) await decodeEntry(b)
    rates.push(bytes.length / ((performance.now() - t0) / 1000))
  }
  progress(`anchor decodeEntry: ${rates.map(r => fmt(r, 0)).join(', ')} entries/s`)
  return median(rates)
}

/** Verifications per second of bare ed25519Verify over the same signatures, median of ANCHOR_RUNS. */
function anchorVerify (bytes: Uint8Array[]): { rate: number, valid: number } {
  // Rebuild exactly what record.ts signs: the domain tag, then { v, type, author, payload }.
  const items = bytes.map(b => {
    const { v, type, author, payload, sig } = dagCbor.decode(b) as { v: number, type: string, author: string, payload: unknown, sig: Uint8Array }
    const body = dagCbor.encode({ v, type, author, payload })
    const message = new Uint8Array(RECORD_DOMAIN.length + body.length)
    message.set(RECORD_DOMAIN)
    message.set(body, RECORD_DOMAIN.length)
    return { publicKey: publicKeyFromDid(author), message, sig }
  })
  const rates: number[] = []
  let valid = 0
  for (let run = 0; run < ANCHOR_RUNS; run++) {
    valid = 0
    const t0 = performance.now()
    for (const it of items) if (ed25519Verify(it.publicKey, it.message, it.sig)) valid++
    rates.push(items.length / ((performance.now() - t0) / 1000))
  }
  progress(`anchor ed25519Verify: ${rates.map(r => fmt(r, 0)).join(', ')} verifications/s`)
  return { rate: median(rates), valid }
}

async function benchCatchUp (): Promise<void> {
  progress(`catch-up: two nodes, an author with ${FEED_ENTRIES} entries and a follower with none`)
  const author = await startNode()
  const follower = await startNode()
  countRejections(author)
  countRejections(follower)
  const rejected0 = rejected
  let bytes: Uint8Array[]
  let r: CatchUp
  try {
    bytes = await writeFeed(author)
    progress('catch-up: follower connects and pulls')
    r = await catchUp(author, follower)
    const head = await follower.social.store.head(author.did)
    progress(`catch-up: follower head ${head?.seq ?? 0} after ${fmt(r.seconds, 2)} s (${r.pulls} syncWith calls from the bench)`)
  } finally {
    await stopNodes([author, follower])
  }
  const ours = r.stored / r.seconds
  // The anchors run after both nodes stopped, so nothing else competes for this core.
  const decodeRate = await anchorDecode(bytes)
  const verify = anchorVerify(bytes)

  const complete = r.stored >= FEED_ENTRIES ? '' : `; INCOMPLETE: ${r.stored} of ${FEED_ENTRIES} in ${CATCH_UP_TIMEOUT_MS / 1000} s`
  result({
    figure: `catch-up on one ${FEED_ENTRIES}-entry feed from a peer vs decodeEntry (entries/s; ${fmt(r.seconds, 2)} s${complete})`,
    ours: fmt(ours, 0),
    anchor: fmt(decodeRate, 0),
    ratio: fmt(ours / decodeRate, 3)
  })
  result({
    figure: `catch-up vs bare ed25519Verify of the same signatures (entries/s; ${verify.valid}/${bytes.length} valid)`,
    ours: fmt(ours, 0),
    anchor: fmt(verify.rate, 0),
    ratio: fmt(ours / verify.rate, 3)
  })
  result({
    figure: `catch-up CPU per entry, both nodes (ms; ${fmt(r.cpuMs / 1000, 2)} s CPU in ${fmt(r.seconds, 2)} s, event loop ${fmt(r.elu * 100, 0)}% busy)`,
    ours: fmt(r.cpuMs / Math.max(1, r.stored), 3),
    anchor: fmt(1000 / decodeRate, 3),
    ratio: fmt((r.cpuMs / Math.max(1, r.stored)) / (1000 / decodeRate), 2)
  })
  result({
    figure: 'record signature verifications per entry during catch-up (1 = each entry checked once)',
    ours: fmt(r.verifies / Math.max(1, r.stored), 2)
  })
  if (rejected > rejected0) progress(`catch-up: ${rejected - rejected0} rejections: ${[...rejectedKinds].map(([k, n]) => `${k} x${n}`).join(', ')}`)
}

// ---------------------------------------------------------------------------------------------
// 2. a post's arrival at the followers

/** What the benchmark reads of gossipsub beyond the public interface. */
interface GossipView { getMeshPeers: (topic: string) => string[] }
const gossip = (n: PeerverseNode): GossipView => n.net.services.pubsub as unknown as GossipView

async function buildSwarm (): Promise<{ author: PeerverseNode, followers: PeerverseNode[] }> {
  progress(`push: starting 1 author and ${FOLLOWERS} followers in this process`)
  const t0 = performance.now()
  const author = await startNode()
  countRejections(author)
  const followers: PeerverseNode[] = []
  let failedDials = 0
  for (let i = 0; i < FOLLOWERS; i++) {
    const f = await startNode()
    countRejections(f)
    // Follow first (no peers yet), so the subscription goes out with the first gossip hello.
    await f.social.follow(author.did)
    const targets = new Set<PeerverseNode>([author])
    for (let k = 0; k < RANDOM_DIALS_PER_FOLLOWER && i > 0; k++) targets.add(followers[rand.int(i)])
    const ok = await Promise.all([...targets].map(async t => await dial(f, t)))
    failedDials += ok.filter(x => !x).length
    followers.push(f)
    if ((i + 1) % 10 === 0) progress(`push: ${i + 1} followers up after ${fmt((performance.now() - t0) / 1000)} s`)
  }
  const s = (performance.now() - t0) / 1000
  progress(`push: ${FOLLOWERS + 1} nodes started and dialled in ${fmt(s)} s (${fmt(s * 1000 / (FOLLOWERS + 1), 0)} ms per node)${failedDials > 0 ? `, ${failedDials} dials failed` : ''}`)
  console.log(`push swarm: ${FOLLOWERS + 1} nodes started and dialled in ${fmt(s)} s; the author has ${author.net.getPeers().length} peers, followers p50 ${percentile(followers.map(f => f.net.getPeers().length), 50)}`)
  return { author, followers }
}

async function formTopic (author: PeerverseNode, followers: PeerverseNode[], topic: string): Promise<void> {
  const t0 = performance.now()
  const seen = await waitFor(() => author.topicPeers(topic).length >= followers.length, TOPIC_DEADLINE_MS, 100)
  const meshed = await waitFor(() => followers.every(f => gossip(f).getMeshPeers(topic).length >= Math.min(MESH_TARGET, followers.length - 1)), TOPIC_DEADLINE_MS, 100)
  const sizes = followers.map(f => gossip(f).getMeshPeers(topic).length)
  progress(`push: topic ${seen && meshed ? 'formed' : 'NOT formed (deadline)'} in ${fmt((performance.now() - t0) / 1000)} s`)
  console.log(`push topic: the author sees ${author.topicPeers(topic).length}/${followers.length} followers subscribed; follower mesh sizes min ${Math.min(...sizes)} / p50 ${percentile(sizes, 50)} / max ${Math.max(...sizes)} (waited for ${MESH_TARGET})`)
}

interface Arrival { id: string, follower: number, at: number }

async function benchPush (): Promise<void> {
  const { author, followers } = await buildSwarm()
  const topic = feedTopic(author.did)
  try {
    await formTopic(author, followers, topic)

    const windows: string[] = []
    for (let t = 0; t < SETTLE_MS; t += SETTLE_WINDOW_MS) {
      const s = meter()
      await sleep(SETTLE_WINDOW_MS)
      const r = measured(s)
      windows.push(fmt(r.cpuMs / r.ms * 100, 0))
    }
    progress(`push: settled ${SETTLE_MS / 1000} s; CPU per ${SETTLE_WINDOW_MS / 1000} s window (% of one core): ${windows.join(', ')}`)

    const idle = meter()
    await sleep(IDLE_SAMPLE_MS)
    const bg = measured(idle)
    const bgCpuPerMs = bg.cpuMs / bg.ms
    result({ figure: `push swarm idle background, ${FOLLOWERS + 1} nodes (% of one core; event loop ${fmt(bg.elu * 100, 0)}% busy)`, ours: fmt(bgCpuPerMs * 100) })
    if (bg.elu > SATURATED_ELU) console.log(`push: the event loop was already ${fmt(bg.elu * 100, 0)}% busy before the first post, so the latencies below are mostly queueing behind the idle swarm`)

    const arrivals: Arrival[] = []
    const seen = new Set<string>()
    followers.forEach((f, index) => {
      f.addEventListener('feed:entry', (evt: CustomEvent<FeedEntryEvent>) => {
        if (evt.detail.author !== author.did || evt.detail.kind !== 'post') return
        const key = `${index}/${evt.detail.id}`
        if (seen.has(key)) return
        seen.add(key)
        arrivals.push({ id: evt.detail.id, follower: index, at: performance.now() })
      })
    })
    const rejected0 = rejected
    const gaps0 = socialCount.gaps
    const skipped0 = socialCount.skipped

    progress(`push: the author posts ${POSTS} times, ${POST_GAP_MS} ms apart`)
    const postedAt = new Map<string, number>()
    const postMs: number[] = []
    let postErrors = 0
    const m = meter()
    for (let i = 0; i < POSTS; i++) {
      const t0 = performance.now()
      try {
        const entry = await author.social.post(`${postText()} #${i}`)
        postedAt.set(entry.id.toString(), t0)
        postMs.push(performance.now() - t0)
      } catch (err) {
        postErrors++
        progress(`post ${i} failed: ${(err as Error).message}`)
      }
      const wait = t0 + POST_GAP_MS - performance.now()
      if (wait > 0) await sleep(wait)
    }
    const expected = postedAt.size * followers.length
    let last = -1
    let quietSince = performance.now()
    const end = performance.now() + DELIVERY_DEADLINE_MS
    while (arrivals.length < expected && performance.now() < end) {
      if (arrivals.length !== last) { last = arrivals.length; quietSince = performance.now() }
      if (performance.now() - quietSince > DELIVERY_QUIET_MS) break
      await sleep(50)
    }
    const w = measured(m)

    const latencies: number[] = []
    const perFollower = new Map<number, number>()
    for (const a of arrivals) {
      const t0 = postedAt.get(a.id)
      if (t0 == null) continue
      latencies.push(a.at - t0)
      perFollower.set(a.follower, (perFollower.get(a.follower) ?? 0) + 1)
    }
    const delivered = latencies.length
    const missing = followers.length - perFollower.size
    const netCpu = w.cpuMs - bgCpuPerMs * w.ms
    result({
      figure: `push: a post's arrival at ${FOLLOWERS} followers p50 / p99 (ms, from post() to each follower's feed:entry; max ${fmt(Math.max(...latencies), 1)})`,
      ours: `${fmt(percentile(latencies, 50), 1)} / ${fmt(percentile(latencies, 99), 1)}`
    })
    result({
      figure: `push delivery ratio (${delivered} / ${expected}${missing > 0 ? `; ${missing} followers got none` : ''}${postErrors > 0 ? `; ${postErrors} posts failed` : ''})`,
      ours: fmt(delivered / Math.max(1, expected), 4)
    })
    result({ figure: 'push: author post() p50 / p99 (ms; sign + fsync, before the gossip publish)', ours: `${fmt(percentile(postMs, 50), 1)} / ${fmt(percentile(postMs, 99), 1)}` })
    result({
      figure: `push CPU, whole process, while posting (% of one core over ${fmt(w.ms / 1000, 1)} s; event loop ${fmt(w.elu * 100, 0)}% busy)`,
      ours: fmt(w.cpuMs / w.ms * 100)
    })
    result({ figure: `push CPU per post, all ${FOLLOWERS + 1} nodes (ms; ${fmt(netCpu / POSTS, 1)} net of idle background)`, ours: fmt(w.cpuMs / POSTS, 1) })
    result({
      figure: 'push: gossip entries that arrived past a gap (SequenceGapError) / pulls skipped because one from that peer was running',
      ours: socialCount.counted ? `${socialCount.gaps - gaps0} / ${socialCount.skipped - skipped0}` : 'not measured'
    })
    if (rejected > rejected0) progress(`push: ${rejected - rejected0} rejections: ${[...rejectedKinds].map(([k, n]) => `${k} x${n}`).join(', ')}`)
  } finally {
    progress('push: stopping the swarm')
    await stopNodes([author, ...followers])
  }
}

// ---------------------------------------------------------------------------------------------

async function main (): Promise<void> {
  const started = performance.now()
  console.log(`peerverse bench:social  seed ${SEED}  node ${process.version}  feed ${FEED_ENTRIES} entries  followers ${FOLLOWERS}`)
  instrumentSocial()
  try {
    await benchCatchUp()
    await benchPush()
  } finally {
    await stopNodes(nodes)
    await Promise.all(dirs.map(async d => { await rm(d, { recursive: true, force: true }) }))
  }

  printSummary(summary)
  console.log(`\ntotal ${fmt((performance.now() - started) / 1000)} s`)
}

await main()
