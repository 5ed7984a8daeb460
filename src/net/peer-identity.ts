/**
 * `/peerverse/identity/1.0.0`: two peers swap their signed peer bindings, so each learns which
 * user (did:key) the other peer acts for. Each side writes one length-prefixed binding and reads
 * one, bounded by MAX_BINDING_BYTES; a binding that is malformed, oversized, badly signed or names
 * another peer id is rejected with a named error and counted against the sender.
 */
import type { Connection, PeerId, Stream } from '@libp2p/interface'
import { framed, UnexpectedEOFError, type Framed } from './framed.ts'
import { MAX_BINDING_BYTES, verifyPeerBinding } from '../identity/binding.ts'
import type { Network } from './network.ts'
import { PROTOCOL_MAX_INBOUND_STREAMS, PROTOCOL_MAX_OUTBOUND_STREAMS, PROTOCOL_TIMEOUT_MS, MAX_CONNECTIONS } from './limits.ts'

export const PEER_IDENTITY_PROTOCOL = '/peerverse/identity/1.0.0'

export interface PeerIdentityEvents {
  onIdentified?: (peerId: string, did: string) => void
  onRejected?: (peerId: string, protocol: string, error: Error) => void
}

/** Swaps bindings with every peer that speaks the protocol, and remembers peer id -> did. */
export class PeerIdentityService {
  private readonly net: Network
  private readonly binding: Uint8Array
  private readonly events: PeerIdentityEvents
  /** peer id -> did, for connected peers only (bounded by MAX_CONNECTIONS). */
  readonly dids = new Map<string, string>()
  private started = false
  private readonly onIdentify = (evt: CustomEvent<{ peerId: PeerId, protocols: string[], connection: Connection }>): void => {
    const { peerId, protocols, connection } = evt.detail
    // The dialling side opens the exchange; the other side learns the dialler's binding as it answers.
    if (connection.direction !== 'outbound' || !protocols.includes(PEER_IDENTITY_PROTOCOL) || this.dids.has(peerId.toString())) return
    void this.exchange(connection).catch(() => {})
  }

  private readonly onDisconnect = (evt: CustomEvent<PeerId>): void => {
    this.dids.delete(evt.detail.toString())
  }

  constructor (net: Network, binding: Uint8Array, events: PeerIdentityEvents = {}) {
    this.net = net
    this.binding = binding
    this.events = events
  }

  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    await this.net.handle(PEER_IDENTITY_PROTOCOL, (stream, connection) => { void this.respond(stream, connection) }, {
      maxInboundStreams: PROTOCOL_MAX_INBOUND_STREAMS,
      maxOutboundStreams: PROTOCOL_MAX_OUTBOUND_STREAMS,
      runOnLimitedConnection: true
    })
    this.net.addEventListener('peer:identify', this.onIdentify as EventListener)
    this.net.addEventListener('peer:disconnect', this.onDisconnect as EventListener)
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    this.net.removeEventListener('peer:identify', this.onIdentify as EventListener)
    this.net.removeEventListener('peer:disconnect', this.onDisconnect as EventListener)
    await this.net.unhandle(PEER_IDENTITY_PROTOCOL)
  }

  /** Opens the protocol to a connected peer, returns its did. */
  async exchange (connection: Connection): Promise<string> {
    const signal = AbortSignal.timeout(PROTOCOL_TIMEOUT_MS)
    const stream = await connection.newStream(PEER_IDENTITY_PROTOCOL, { signal, runOnLimitedConnection: true })
    const lp = framed(stream, { maxFrameBytes: MAX_BINDING_BYTES })
    try {
      await lp.write(this.binding, { signal })
      const did = await this.readBinding(lp, connection.remotePeer, signal)
      await stream.close({ signal })
      return did
    } catch (err) {
      stream.abort(err as Error)
      this.reject(connection.remotePeer, err as Error)
      throw err
    }
  }

  private async respond (stream: Stream, connection: Connection): Promise<void> {
    const signal = AbortSignal.timeout(PROTOCOL_TIMEOUT_MS)
    const lp = framed(stream, { maxFrameBytes: MAX_BINDING_BYTES })
    try {
      await this.readBinding(lp, connection.remotePeer, signal)
      await lp.write(this.binding, { signal })
      await stream.close({ signal })
    } catch (err) {
      stream.abort(err as Error)
      this.reject(connection.remotePeer, err as Error)
    }
  }

  private async readBinding (lp: Framed, remote: PeerId, signal: AbortSignal): Promise<string> {
    const bytes = await lp.read({ signal })
    if (bytes == null) throw new UnexpectedEOFError('the stream closed before a binding')
    const { did } = await verifyPeerBinding(bytes, remote.toString())
    const known = this.dids.get(remote.toString())
    if (known !== did && (this.dids.size < MAX_CONNECTIONS || known != null)) {
      this.dids.set(remote.toString(), did)
      this.events.onIdentified?.(remote.toString(), did)
    }
    return did
  }

  private reject (peer: PeerId, error: Error): void {
    if (error.name === 'AbortError' || error.name === 'TimeoutError' || error.name === 'StreamResetError') return
    this.events.onRejected?.(peer.toString(), PEER_IDENTITY_PROTOCOL, error)
  }
}
