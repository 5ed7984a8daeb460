/**
 * A network's name and the chain handshake. A network is named by its genesis: the CID of the
 * genesis file's exact bytes, added to the content store as a file (the CID `peerverse add` gives),
 * pinned and provided, so every peer of the chain serves it over the content swarm. Peers tell each
 * other their network on connecting (`/peerverse/network/1.0.0`: the asker sends its own name, the
 * server answers with its own, one small JSON frame each way), and the peer keeps peer -> chain for
 * its status and to notice when every peer it was told to start from is on another chain: a fork
 * it must not make silently.
 */
import type { CID } from 'multiformats/cid'
import { CID as CIDClass } from 'multiformats/cid'
import type { ProtocolPort, RejectSink } from '../net/ports.ts'
import { request, serve } from '../net/rpc.ts'

export const NETWORK_PROTOCOL = '/peerverse/network/1.0.0'
/** Largest handshake frame either way (a CID and a chain id fit in a tenth of it). */
export const MAX_HANDSHAKE_BYTES = 512
/** Deadline of one handshake exchange. */
export const HANDSHAKE_TIMEOUT_MS = 5_000
/** Handshake streams per connection at once, each way. */
export const MAX_HANDSHAKE_STREAMS = 2

/** A network's name: its genesis CID and the chain id the genesis names. */
export interface NetworkName {
  genesis: string
  chain: string
}

/** A handshake frame that is not a network name (or `{}` from a peer still joining). */
export class InvalidHandshakeError extends Error {
  name = 'InvalidHandshakeError'
}

/** Encodes our name for the handshake; a peer that has no chain yet sends `{}`. */
export function encodeHandshake (name: NetworkName | undefined): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(name == null ? {} : { genesis: name.genesis, chain: name.chain }))
}

/** Decodes a handshake frame: a name, or null for a peer with no chain yet; InvalidHandshakeError otherwise. */
export function decodeHandshake (bytes: Uint8Array): NetworkName | null {
  if (bytes.length > MAX_HANDSHAKE_BYTES) throw new InvalidHandshakeError(`handshake of ${bytes.length} bytes, over ${MAX_HANDSHAKE_BYTES}`)
  let v: unknown
  try {
    v = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes))
  } catch (err) {
    throw new InvalidHandshakeError(`handshake is not JSON: ${(err as Error).message}`)
  }
  if (v == null || typeof v !== 'object' || Array.isArray(v)) throw new InvalidHandshakeError('handshake must be a JSON object')
  const o = v as Record<string, unknown>
  if (Object.keys(o).length === 0) return null
  if (typeof o.chain !== 'string' || !/^[a-z0-9-]{1,64}$/.test(o.chain)) throw new InvalidHandshakeError('handshake chain must be 1..64 of a-z, 0-9, -')
  if (typeof o.genesis !== 'string') throw new InvalidHandshakeError('handshake genesis must be a CID')
  let genesis: string
  try {
    genesis = CIDClass.parse(o.genesis).toV1().toString()
  } catch {
    throw new InvalidHandshakeError('handshake genesis must be a CID')
  }
  return { genesis, chain: o.chain }
}

/** The CID naming a network: its genesis file's bytes as the content store adds them (pinned, provided). */
export async function addGenesis (content: { add: (bytes: Uint8Array, options: { name?: string, pin?: boolean }) => Promise<{ cid: CID }> }, bytes: Uint8Array): Promise<string> {
  const { cid } = await content.add(bytes, { name: 'genesis.json', pin: true })
  return cid.toV1().toString()
}

/** One other-chain peer among those we were told to start from. */
export interface MismatchDetail {
  ours: NetworkName
  theirs: Array<NetworkName & { peer: string }>
}

export interface NetworkIdComponents {
  protocols: ProtocolPort
  onRejected?: RejectSink
  /** Peers we were told to start from (bootstrap or remembered): all on another chain is a mismatch. */
  startPeers: string[]
  /** Every bootstrap peer that answered is on another chain than ours (called once per change to that). */
  onMismatch: (detail: MismatchDetail) => void
}

/** The handshake service: answers our name, asks connected peers theirs, keeps peer -> name. */
export class NetworkIdService {
  private readonly c: NetworkIdComponents
  /** Our name, once the chain is resolved. */
  own?: NetworkName
  /** Whether the network was configured (a genesis, a join, a remembered one) rather than our default devnet. */
  configured = false
  /** Connected peers' names (null: the peer has no chain yet). */
  readonly peers = new Map<string, NetworkName | null>()
  /** Start peers' answers (kept after they disconnect, for the mismatch verdict). */
  private readonly startAnswers = new Map<string, NetworkName | null>()
  private readonly startPeers: Set<string>
  private mismatched = false
  private offs: Array<() => void> = []
  private started = false

  constructor (components: NetworkIdComponents) {
    this.c = components
    this.startPeers = new Set(components.startPeers)
  }

  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    const { protocols } = this.c
    await protocols.handle(NETWORK_PROTOCOL, serve({ protocol: NETWORK_PROTOCOL, maxRequestBytes: MAX_HANDSHAKE_BYTES, timeoutMs: HANDSHAKE_TIMEOUT_MS, onRejected: this.c.onRejected, isViolation: e => e.name === 'InvalidHandshakeError' }, async (req, { remote, signal, out }) => {
      this.record(remote.peer, decodeHandshake(req))
      await out.write(encodeHandshake(this.own), { signal })
    }), { maxInboundStreams: MAX_HANDSHAKE_STREAMS, maxOutboundStreams: MAX_HANDSHAKE_STREAMS, runOnLimitedConnection: true })
    this.offs.push(protocols.onPeer('identify', (peer, protos) => {
      if (protos?.includes(NETWORK_PROTOCOL) === true && !this.peers.has(peer)) void this.ask(peer).catch(() => {})
    }))
    this.offs.push(protocols.onPeer('disconnect', peer => { this.peers.delete(peer) }))
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    for (const off of this.offs) off()
    this.offs = []
    await this.c.protocols.unhandle(NETWORK_PROTOCOL).catch(() => {})
  }

  /** Asks a peer its network (dialling it at `addresses` if needed); null: it has no chain yet. */
  async ask (peer: string, options: { signal?: AbortSignal, addresses?: string[] } = {}): Promise<NetworkName | null> {
    let answer: NetworkName | null = null
    let got = false
    try {
      await request(this.c.protocols, peer, NETWORK_PROTOCOL, encodeHandshake(this.own), frame => {
        answer = decodeHandshake(frame)
        got = true
        return false
      }, { maxFrameBytes: MAX_HANDSHAKE_BYTES, timeoutMs: HANDSHAKE_TIMEOUT_MS, signal: options.signal, addresses: options.addresses, runOnLimitedConnection: true })
    } catch (err) {
      if ((err as Error).name === 'InvalidHandshakeError' || (err as Error).name === 'InvalidDataLengthError') this.c.onRejected?.(peer, NETWORK_PROTOCOL, err as Error)
      throw err
    }
    if (!got) throw new InvalidHandshakeError('the peer closed without answering')
    this.record(peer, answer)
    return answer
  }

  /** Sets our name (the chain is resolved or switched) and looks at the start peers' answers again. */
  setOwn (name: NetworkName, configured: boolean): void {
    this.own = name
    this.configured = configured
    this.mismatched = false
    this.check()
    // Peers asked before we had a chain (or on the old one) learn our name now.
    if (this.started) for (const peer of this.peers.keys()) void this.ask(peer).catch(() => {})
  }

  private record (peer: string, name: NetworkName | null): void {
    this.peers.set(peer, name)
    if (this.startPeers.has(peer)) {
      this.startAnswers.set(peer, name)
      this.check()
    }
  }

  /** Emits a mismatch when every start peer that answered with a chain is on another chain. */
  private check (): void {
    const own = this.own
    if (own == null) return
    const answered = [...this.startAnswers].filter((e): e is [string, NetworkName] => e[1] != null)
    if (answered.length === 0) return
    const other = answered.filter(([, n]) => n.genesis !== own.genesis)
    if (other.length < answered.length) { this.mismatched = false; return }
    if (this.mismatched) return
    this.mismatched = true
    this.c.onMismatch({ ours: { ...own }, theirs: other.map(([peer, n]) => ({ peer, ...n })) })
  }

  /** The network part of the node's status. */
  status (): NetworkStatus {
    let onChain = 0
    let other = 0
    for (const name of this.peers.values()) {
      if (name == null || this.own == null) continue
      if (name.genesis === this.own.genesis) onChain++
      else other++
    }
    return { genesis: this.own?.genesis ?? '', chain: this.own?.chain ?? '', devnet: !this.configured, peersOnChain: onChain, peersOnOtherChains: other }
  }
}

/** `status.network`: the chain this peer follows and how many connected peers share it. */
export interface NetworkStatus {
  /** The genesis CID: the network's name. */
  genesis: string
  chain: string
  /** A devnet of our own (no network configured). */
  devnet: boolean
  peersOnChain: number
  peersOnOtherChains: number
}
