/**
 * The Bitswap client: a download's holder that does not speak our swarm is asked over Bitswap.
 *
 * A probe sends want-have for the root (with send-dont-have) and waits SESSION_OPEN_TIMEOUT_MS for
 * HAVE (or the block itself, which a server may send for a small one); on HAVE the holder joins
 * the download as a BitswapSession, a swarm Session whose WANT and CANCEL become want-block and
 * cancel entries, and whose answers (blocks, DONT_HAVE) come back as the swarm's messages, so the
 * download's scheduling, windows, stalls and end game apply to it unchanged.
 *
 * Bitswap sends no CID with a block: we build it from the block's prefix and the hash of its
 * bytes. Bytes that do not match what we asked therefore arrive as a block we never asked that
 * peer for: it is not stored, and the peer is banned (the swarm's one ban list). What each peer
 * was asked recently is kept (at most BITSWAP_RECENT_WANTS_PER_PEER) so that a block arriving
 * after we cancelled or dropped its want is waste, not a lie.
 */
import type { Stream } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import type { CID } from 'multiformats/cid'
import { blockCid, type BitswapMessage, type WantEntry } from './bitswap-wire.ts'
import { SESSION_OPEN_TIMEOUT_MS } from './swarm-limits.ts'
import { BadBlockError, Session } from './swarm-session.ts'
import type { SwarmMessage } from './swarm-wire.ts'

const log = logger('peerverse:bitswap')

/** CIDs asked of one peer that we remember (a block for one of them is never a lie). */
export const BITSWAP_RECENT_WANTS_PER_PEER = 4096
/** Peers whose recent wants we remember at once. */
export const BITSWAP_MAX_CLIENT_PEERS = 1024
/** A peer found not to speak Bitswap is not asked again for this long. */
export const BITSWAP_UNSUPPORTED_BACKOFF_MS = 60_000
/** Messages one session holds for its download before it reads them (its window bounds them). */
export const BITSWAP_MAX_SESSION_QUEUE = 1024

interface OutboxPort {
  want: (entry: WantEntry) => void
}

export interface BitswapClientInit {
  outbox: (peer: string) => OutboxPort
  isBanned: (peer: string) => boolean
  penalize: (peer: string, error: Error) => void
}

/** A holder reached over Bitswap, as a download sees it. */
export class BitswapSession extends Session {
  private readonly client: BitswapClient
  private readonly queue: SwarmMessage[] = []
  private wake?: () => void
  private ended = false
  /** Blocks asked of this holder and not yet answered or cancelled. */
  readonly asked = new Map<string, CID>()

  constructor (peer: string, client: BitswapClient) {
    const stream = { abort: () => {} }
    super(peer, stream as unknown as Stream, 'complete', 0, new Uint8Array(0))
    this.client = client
    // The download drops a session by aborting its stream.
    stream.abort = () => { this.end() }
  }

  override send (msg: SwarmMessage): void {
    if (this.ended) return
    if (msg.type === 'want') this.client.want(this, msg.cid)
    else if (msg.type === 'cancel') this.client.cancel(this, msg.cid)
  }

  /** An answer for the download. */
  deliver (msg: SwarmMessage): void {
    if (this.ended) return
    if (this.queue.length >= BITSWAP_MAX_SESSION_QUEUE) { this.end(); return }
    this.queue.push(msg)
    this.wake?.()
  }

  /** The answers, as the download reads a swarm session's frames; ends when the session does. */
  async * messages (): AsyncGenerator<SwarmMessage> {
    while (true) {
      const next = this.queue.shift()
      if (next != null) { yield next; continue }
      if (this.ended) return
      await new Promise<void>(resolve => { this.wake = resolve })
      this.wake = undefined
    }
  }

  end (): void {
    if (this.ended) return
    this.ended = true
    this.client.remove(this)
    this.wake?.()
  }
}

interface Probe {
  key: string
  resolve: (have: boolean) => void
}

/** The client side of Bitswap: sessions per peer, probes, and the check of every block that arrives. */
export class BitswapClient {
  private readonly init: BitswapClientInit
  private readonly sessions = new Map<string, Set<BitswapSession>>()
  private readonly probes = new Map<string, Set<Probe>>()
  /** Recently asked CIDs by peer, oldest first. */
  private readonly recent = new Map<string, Set<string>>()
  /** Peers that do not speak Bitswap, and since when (at most BITSWAP_MAX_CLIENT_PEERS). */
  private readonly unsupported = new Map<string, number>()

  constructor (init: BitswapClientInit) {
    this.init = init
  }

  private remember (peer: string, key: string): void {
    let set = this.recent.get(peer)
    if (set == null) {
      if (this.recent.size >= BITSWAP_MAX_CLIENT_PEERS) this.recent.delete(this.recent.keys().next().value as string)
      set = new Set()
      this.recent.set(peer, set)
    }
    set.delete(key)
    set.add(key)
    if (set.size > BITSWAP_RECENT_WANTS_PER_PEER) set.delete(set.values().next().value as string)
  }

  /**
   * Asks `peer` over Bitswap whether it holds `root`: a session when it says HAVE within
   * SESSION_OPEN_TIMEOUT_MS, undefined when it says DONT_HAVE or nothing. Throws when the peer
   * cannot be reached on Bitswap.
   */
  async open (peer: string, root: CID): Promise<BitswapSession | undefined> {
    if (this.init.isBanned(peer)) return undefined
    const since = this.unsupported.get(peer)
    if (since != null && Date.now() - since < BITSWAP_UNSUPPORTED_BACKOFF_MS) return undefined
    const key = root.toString()
    this.remember(peer, key)
    let probe: Probe | undefined
    const answer = new Promise<boolean>(resolve => { probe = { key, resolve } })
    const set = this.probes.get(peer) ?? new Set()
    set.add(probe as Probe)
    this.probes.set(peer, set)
    const outbox = this.init.outbox(peer)
    let timer: ReturnType<typeof setTimeout> | undefined
    try {
      outbox.want({ cid: root, priority: 1, cancel: false, wantType: 'have', sendDontHave: true })
      const have = await Promise.race([answer, new Promise<boolean>(resolve => { timer = setTimeout(() => { resolve(false) }, SESSION_OPEN_TIMEOUT_MS) })])
      if (!have) {
        outbox.want({ cid: root, priority: 1, cancel: true, wantType: 'have', sendDontHave: false })
        return undefined
      }
      const session = new BitswapSession(peer, this)
      const sessions = this.sessions.get(peer) ?? new Set()
      sessions.add(session)
      this.sessions.set(peer, sessions)
      log('%s holds %s (Bitswap)', peer, key)
      return session
    } finally {
      clearTimeout(timer)
      set.delete(probe as Probe)
      if (set.size === 0 && this.probes.get(peer) === set) this.probes.delete(peer)
    }
  }

  want (s: BitswapSession, cid: CID): void {
    const key = cid.toString()
    s.asked.set(key, cid)
    this.remember(s.peer, key)
    this.init.outbox(s.peer).want({ cid, priority: 1, cancel: false, wantType: 'block', sendDontHave: true })
  }

  cancel (s: BitswapSession, cid: CID): void {
    const key = cid.toString()
    if (!s.asked.delete(key)) return
    if (this.askedByOther(s, key)) return
    this.init.outbox(s.peer).want({ cid, priority: 1, cancel: true, wantType: 'block', sendDontHave: false })
  }

  private askedByOther (s: BitswapSession, key: string): boolean {
    for (const other of this.sessions.get(s.peer) ?? []) if (other !== s && other.asked.has(key)) return true
    return false
  }

  /** A session ended: its open wants are cancelled. */
  remove (s: BitswapSession): void {
    const set = this.sessions.get(s.peer)
    set?.delete(s)
    if (set?.size === 0) this.sessions.delete(s.peer)
    for (const [key, cid] of s.asked) {
      if (!this.askedByOther(s, key)) this.init.outbox(s.peer).want({ cid, priority: 1, cancel: true, wantType: 'block', sendDontHave: false })
    }
    s.asked.clear()
  }

  /** The peer went away or could not be sent to: its sessions end (nothing more is sent) and its probes get no answer. */
  peerGone (peer: string, err: Error): void {
    if (err.name === 'UnsupportedProtocolError') {
      this.unsupported.delete(peer)
      if (this.unsupported.size >= BITSWAP_MAX_CLIENT_PEERS) this.unsupported.delete(this.unsupported.keys().next().value as string)
      this.unsupported.set(peer, Date.now())
    }
    for (const s of [...this.sessions.get(peer) ?? []]) { s.asked.clear(); s.end() }
    for (const p of this.probes.get(peer) ?? []) p.resolve(false)
    if (this.sessions.has(peer) || this.probes.has(peer)) log('Bitswap with %s ended: %s', peer, err.message)
  }

  /** Blocks and presences from a peer. A block it was never asked for bans it. */
  async received (peer: string, msg: BitswapMessage): Promise<void> {
    if (this.init.isBanned(peer)) return
    const sessions = this.sessions.get(peer) ?? new Set<BitswapSession>()
    const probes = this.probes.get(peer)
    const recent = this.recent.get(peer)
    for (const block of msg.blocks) {
      let cid: CID
      try {
        cid = await blockCid(block)
      } catch (err) {
        this.init.penalize(peer, new BadBlockError(`${peer} sent a block we cannot check: ${(err as Error).message}`))
        return
      }
      const key = cid.toString()
      let taken = false
      for (const p of probes ?? []) if (p.key === key) { p.resolve(true); taken = true }
      for (const s of sessions) {
        if (s.inflight.has(key) || s.cancelled.has(key)) {
          s.asked.delete(key)
          s.deliver({ type: 'block', cid, bytes: block.data })
          taken = true
          break
        }
      }
      if (taken || recent?.has(key) === true) continue
      log('%s sent %s, which no one asked it for', peer, key)
      this.init.penalize(peer, new BadBlockError(`${peer} sent a block no one asked it for (its bytes hash to ${key})`))
      return
    }
    for (const p of msg.presences) {
      const key = p.cid.toString()
      for (const probe of probes ?? []) if (probe.key === key) probe.resolve(p.have)
      if (p.have) continue
      for (const s of sessions) {
        if (s.inflight.has(key)) {
          s.asked.delete(key)
          s.deliver({ type: 'dont-have', cid: p.cid })
          break
        }
      }
    }
  }
}

