/**
 * Light speakers for the voice benchmark: many real members of a space in one Node process, each
 * its own libp2p peer on 127.0.0.1 (TCP, Noise, Yamux, GossipSub, a client DHT) with its own seeded
 * identity and signed peer binding, running the project's own space and voice capabilities. A
 * speaker joins the space (admission proof, descriptor sync, presence at its seeded position) and
 * speaks `/peerverse/voice/1.0.0` through the voice service's `send`: a TALKING note every
 * TALKING_NOTE_MS and an AUDIO frame of a real Opus packet every 20 ms. What a full peer adds
 * (ledger, content, social, directory, the API) is left out: the listener's peer reads none of it
 * from a speaker, and it is what made full peers too heavy to run 64 of on two cores.
 *
 * `Speakers` (the benchmark's side) forks SPEAKER_WORKERS children of this file and spreads the
 * speakers over them; each child reports what every speaker of it sent, and its own CPU and event
 * loop delay, so an overloaded load generator shows in the figures instead of hiding in them.
 */
import { fork, type ChildProcess } from 'node:child_process'
import { mkdir } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import type { Ed25519PrivateKey } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { createPeerBinding } from '../src/identity/binding.ts'
import { didFromPublicKey } from '../src/identity/did.ts'
import { ed25519KeyFromSeed, type Ed25519Key } from '../src/identity/ed25519.ts'
import { libp2pGossip, libp2pProtocols, libp2pRouting } from '../src/net/libp2p-ports.ts'
import { createNetwork, type Network } from '../src/net/network.ts'
import { space, spaceTopic, type SpaceService } from '../src/space/index.ts'
import { Store } from '../src/store/store.ts'
import { voice, type VoiceService } from '../src/voice/index.ts'
import { seeded } from './lib.ts'

/** Speaker frames a second (20 ms Opus frames). */
export const SPEAKER_FPS = 50
/** Child processes the speakers are spread over. */
export const SPEAKER_WORKERS = 2
/** Frames a late speaker tick sends at most (the rest are skipped, counted as not sent). */
const CATCH_UP = 5
/** Speakers a child joins at once, and join attempts each. */
const JOINING = 4
const JOIN_ATTEMPTS = 5
/** How long one `add` may take: speakers not in the space by then are stopped and counted as not joined. */
export const JOIN_DEADLINE_MS = 90_000
const SEE_SPACE_MS = 30_000
/** A speaker's inbound connections a second from one host (all of them are on 127.0.0.1). */
const LOOPBACK_INBOUND_PER_SECOND = 1_000
const DEBUG = process.env.BENCH_VOICE_DEBUG === '1'
const SELF = fileURLToPath(import.meta.url)

/** One light speaker: a libp2p peer with the space and voice capabilities. */
export interface LightSpeaker {
  did: string
  net: Network
  space: SpaceService
  voice: VoiceService
  seq: number
  /** Frames `send` took, and those it refused (by error name). */
  sent: number
  errors: Record<string, number>
  stop: () => Promise<void>
}

/** A speaker's keys from its seed: the libp2p peer key, the user key and its did. */
export async function speakerKeys (seed: number): Promise<{ peerKey: Ed25519PrivateKey, userKey: Ed25519Key, did: string }> {
  const rnd = seeded(seed)
  const peerKey = await generateKeyPairFromSeed('Ed25519', rnd.bytes(32))
  const userKey = ed25519KeyFromSeed(rnd.bytes(32))
  return { peerKey, userKey, did: didFromPublicKey(userKey.publicKey) }
}

/** Starts a speaker whose keys come from `seed`, with its space state in `store` (sublevel `s<seed>-space`, once per seed). */
export async function startSpeaker (seed: number, store: Store): Promise<LightSpeaker> {
  const { peerKey, userKey, did } = await speakerKeys(seed)
  const spaceStore = store.sublevel(`s${seed}-space`)
  const net = await createNetwork({
    privateKey: peerKey, listen: ['/ip4/127.0.0.1/tcp/0'], dhtMode: 'client', lanDht: false, relayServer: false, webrtc: false, stun: false, mdns: false,
    // Every speaker dials from 127.0.0.1: the per-host limit on inbound connections is for many
    // peers behind one address, which here is the loopback's artifact.
    connectionManager: { inboundConnectionThreshold: LOOPBACK_INBOUND_PER_SECOND }
  })
  await net.start()
  const binding = (await createPeerBinding(userKey, net.peerId.toString())).bytes
  const gossip = libp2pGossip(net)
  const protocols = libp2pProtocols(net)
  const onRejected = (): void => {}
  const identity = { did, key: userKey, binding }
  const sp = space()({ gossip, protocols, routing: libp2pRouting(net), onRejected, identity, store: spaceStore, parcels: () => [] })
  const vo = voice()({
    protocols,
    onRejected,
    identity,
    spaces: {
      isJoined: id => sp.isJoined(id),
      who: id => sp.who(id),
      me: id => sp.me(id),
      isExcluded: (id, d) => sp.isExcluded(id, d),
      isOwnerMuted: (id, d) => sp.isOwnerMuted(id, d),
      cipher: id => sp.cipher(id)
    },
    social: { isBlocked: () => false, isMuted: () => false }
  })
  await sp.start()
  await vo.start()
  return {
    did, net, space: sp, voice: vo, seq: 0, sent: 0, errors: {},
    stop: async () => {
      await vo.stop().catch(() => {})
      try { await sp.stop() } catch {}
      gossip.close()
      try { await net.stop() } catch {}
    }
  }
}

/** Dials `bootstrap`, waits to see a subscriber of the space, joins it and stands at `position`. */
export async function joinAt (s: LightSpeaker, id: string, bootstrap: string[], position: [number, number, number], name: string, signal?: AbortSignal): Promise<void> {
  const t0 = performance.now()
  for (const a of bootstrap) await s.net.dial(multiaddr(a)).catch(() => {})
  const t1 = performance.now()
  const deadline = Date.now() + SEE_SPACE_MS
  while (s.net.services.pubsub.getSubscribers(spaceTopic(id)).length === 0) {
    // A speaker subscribes only once it joins; it sees the space's topic from its peers' subscriptions.
    if (Date.now() > deadline) break
    signal?.throwIfAborted()
    await sleep(100)
  }
  const t2 = performance.now()
  for (let attempt = 1; ; attempt++) {
    try {
      // The peers it was told to start from hold the space: asked first, as a link's holders are.
      await s.space.join(id, { name, signal, peers: bootstrap.filter(a => a.includes('/p2p/')) })
      break
    } catch (err) {
      if (attempt >= JOIN_ATTEMPTS || signal?.aborted === true) throw err
      await sleep(500 * attempt, undefined, { signal })
    }
  }
  s.space.move(id, position)
  if (DEBUG) process.stderr.write(`[speaker] dial ${(t1 - t0).toFixed(0)} ms, see ${(t2 - t1).toFixed(0)} ms, join ${(performance.now() - t2).toFixed(0)} ms\n`)
}

// ---------------------------------------------------------------------------------------------
// the child: hosts speakers, talks for those asked to

export interface AddSpeakers { op: 'add', space: string, bootstrap: string[], dir: string, positions: Array<[number, number, number]>, packets: number[][], first: number }
/** What a child says about itself: frames each talking speaker sent, refusals, its CPU and loop delay. */
export interface ChildStats { sent: number[], errors: Record<string, number>, skipped: number, cpuMs: number, loopP99Ms: number, loopMaxMs: number }

async function speakerChild (): Promise<void> {
  const speakers: LightSpeaker[] = []
  let store: Store | undefined
  let packets: Uint8Array[] = []
  let spaceId = ''
  let k = 0
  let skipped = 0
  const loop = monitorEventLoopDelay({ resolution: 10 })
  loop.enable()
  // Frames are due by the clock, not by the timer: a late tick sends the frames it owes, at most
  // CATCH_UP of them (as a browser's paced socket does after a busy moment); the rest are skipped.
  const t0 = performance.now()
  let due = 0
  setInterval(() => {
    const owed = Math.floor((performance.now() - t0) / (1000 / SPEAKER_FPS)) - due
    due += owed
    if (packets.length === 0 || speakers.length === 0) return
    skipped += Math.max(0, owed - CATCH_UP) * speakers.length
    for (let f = Math.max(0, owed - CATCH_UP); f < owed; f++) {
      const p = packets[k++ % packets.length]
      const ts = Date.now() >>> 0
      for (const s of speakers) {
        try { s.voice.send(spaceId, { seq: s.seq, ts, level: 60, data: p }); s.sent++ } catch (err) { const n = (err as Error).name; s.errors[n] = (s.errors[n] ?? 0) + 1 }
        s.seq = (s.seq + 1) >>> 0
      }
    }
  }, 1000 / SPEAKER_FPS)
  const stop = async (): Promise<void> => {
    setTimeout(() => { process.exit(0) }, 10_000).unref()
    await Promise.all(speakers.map(async s => { await s.stop() }))
    await store?.close().catch(() => {})
    process.exit(0)
  }
  process.on('disconnect', () => { void stop() })
  process.on('message', (msg: AddSpeakers | { op: 'stop' } | { op: 'stats' }) => {
    if (msg.op === 'stop') { void stop(); return }
    if (msg.op === 'stats') {
      const errors: Record<string, number> = {}
      for (const s of speakers) for (const [n, v] of Object.entries(s.errors)) errors[n] = (errors[n] ?? 0) + v
      const cpu = process.cpuUsage()
      const stats: ChildStats = { sent: speakers.map(s => s.sent), errors, skipped, cpuMs: (cpu.user + cpu.system) / 1000, loopP99Ms: loop.percentile(99) / 1e6, loopMaxMs: loop.max / 1e6 }
      loop.reset()
      process.send?.(stats)
      return
    }
    const m: AddSpeakers = msg
    void (async () => {
      if (store == null) {
        await mkdir(m.dir, { recursive: true })
        store = await Store.open(m.dir, { ballastBytes: 0 })
      }
      const db = store
      let joined = 0
      let next = 0
      const ready: LightSpeaker[] = []
      const signal = AbortSignal.timeout(JOIN_DEADLINE_MS)
      await Promise.all(Array.from({ length: JOINING }, async () => { while (next < m.positions.length && !signal.aborted) await one(next++) }))
      // The new speakers start talking together, once all have joined.
      spaceId = m.space
      packets = m.packets.map(p => Uint8Array.from(p))
      speakers.push(...ready)
      process.send?.({ joined })

      async function one (i: number): Promise<void> {
        let s: LightSpeaker | undefined
        try {
          s = await startSpeaker(m.first + i, db)
          await joinAt(s, m.space, m.bootstrap, m.positions[i], `speaker ${m.first + i}`, signal)
          ready.push(s)
          joined++
        } catch (err) {
          process.stderr.write(`[speaker ${m.first + i}] ${(err as Error).message}\n`)
          await s?.stop()
        }
      }
    })()
  })
  process.send?.({ ready: true })
}

// ---------------------------------------------------------------------------------------------
// the benchmark's side

/** The speaker children, and the speakers they host (seeds `first`, `first + 1`, …). */
export class Speakers {
  readonly children: ChildProcess[] = []
  total = 0

  async start (n: number = SPEAKER_WORKERS): Promise<void> {
    for (let i = 0; i < n; i++) {
      const child = fork(SELF, ['child'], { execPath: process.execPath, execArgv: process.execArgv, stdio: ['ignore', 2, 2, 'ipc'] })
      await new Promise(resolve => child.once('message', resolve))
      this.children.push(child)
    }
  }

  /** Child process ids (their CPU is read from /proc as well). */
  pids (): number[] { return this.children.map(c => c.pid as number) }

  /** Adds `positions.length` speakers, spread over the children; resolves with how many joined. */
  async add (base: Omit<AddSpeakers, 'op' | 'positions' | 'first' | 'dir'> & { dir: string }, positions: Array<[number, number, number]>): Promise<number> {
    const shares = this.children.map((_, i) => positions.filter((__, j) => j % this.children.length === i))
    const joined = await Promise.all(this.children.map(async (child, i) => {
      if (shares[i].length === 0) return 0
      const reply = new Promise<{ joined: number }>(resolve => child.once('message', resolve as (m: unknown) => void))
      child.send({ op: 'add', ...base, dir: `${base.dir}/c${i}`, positions: shares[i], first: 1000 * (i + 1) + this.total })
      return (await reply).joined
    }))
    this.total += positions.length
    return joined.reduce((a, b) => a + b, 0)
  }

  /** Every child's stats (their loop delay restarts from each call). */
  async stats (): Promise<ChildStats[]> {
    return await Promise.all(this.children.map(async child => {
      const reply = new Promise<ChildStats>(resolve => child.once('message', resolve as (m: unknown) => void))
      child.send({ op: 'stats' })
      return await reply
    }))
  }

  async stop (): Promise<void> {
    await Promise.all(this.children.map(async c => {
      if (c.exitCode != null || c.signalCode != null) return
      const gone = new Promise(resolve => c.once('exit', resolve))
      c.send({ op: 'stop' })
      const t = setTimeout(() => { c.kill('SIGKILL') }, 15_000)
      await gone
      clearTimeout(t)
    }))
  }
}

if (process.argv[2] === 'child') await speakerChild()
