/**
 * Bounds on WebRTC between two peers. Each inbound WebRTC signalling stream (the offer and answer,
 * carried over a relay) makes a native peer connection, and @libp2p/webrtc takes as many as a
 * peer opens; two peers that upgrade at once (or a dial by id beside reach's own upgrade) can end
 * with two WebRTC connections that each hold a peer connection and sockets. Here a peer may run
 * WEBRTC_MAX_SIGNALING_PER_PEER signalling streams to us at once, none while it already holds
 * WEBRTC_MAX_CONNECTIONS_PER_PEER WebRTC connections with us, and connections past that bound are
 * closed, the same ones on both sides.
 */
import type { Connection, Stream, StreamMiddleware } from '@libp2p/interface'
import * as L from './limits.ts'

/** A peer's WebRTC signalling stream refused: too many at once, or a WebRTC connection to it is already open. */
export class WebRTCSignalingLimitError extends Error {
  name = 'WebRTCSignalingLimitError'
}

/** Slots per peer: at most `max` taken by one peer at once; a peer with none taken is not remembered. */
export class PerPeerSlots {
  private readonly taken = new Map<string, number>()
  private readonly max: number

  constructor (max: number) { this.max = max }

  take (peer: string): boolean {
    const n = this.taken.get(peer) ?? 0
    if (n >= this.max) return false
    this.taken.set(peer, n + 1)
    return true
  }

  release (peer: string): void {
    const n = (this.taken.get(peer) ?? 0) - 1
    if (n <= 0) this.taken.delete(peer)
    else this.taken.set(peer, n)
  }

  held (peer: string): number { return this.taken.get(peer) ?? 0 }

  get peers (): number { return this.taken.size }
}

/** The middleware on the signalling protocol: `webrtcOpen(peer)` counts the open WebRTC connections with that peer. */
export function signalingLimit (webrtcOpen: (peer: string) => number, slots = new PerPeerSlots(L.WEBRTC_MAX_SIGNALING_PER_PEER), onRefused?: (err: WebRTCSignalingLimitError) => void): StreamMiddleware {
  const refuse = (stream: Stream, err: WebRTCSignalingLimitError): void => {
    stream.abort(err)
    onRefused?.(err)
  }
  return (stream, connection, next) => {
    const peer = connection.remotePeer.toString()
    if (webrtcOpen(peer) >= L.WEBRTC_MAX_CONNECTIONS_PER_PEER) {
      refuse(stream, new WebRTCSignalingLimitError(`${peer} already holds ${L.WEBRTC_MAX_CONNECTIONS_PER_PEER} WebRTC connection(s) with us`))
      return
    }
    if (!slots.take(peer)) {
      refuse(stream, new WebRTCSignalingLimitError(`${peer} runs ${L.WEBRTC_MAX_SIGNALING_PER_PEER} WebRTC signalling stream(s) with us already`))
      return
    }
    let released = false
    const release = (): void => { if (!released) { released = true; slots.release(peer) } }
    stream.addEventListener('close', release, { once: true })
    if (stream.status !== 'open') release()
    next(stream, connection)
  }
}

/**
 * Of the open WebRTC connections given (all with one peer), those past `max`: both sides pick the
 * same ones, keeping first those dialled by the peer with the lower id, then the older.
 */
export function extraWebrtcConnections (conns: Connection[], self: string, max = L.WEBRTC_MAX_CONNECTIONS_PER_PEER): Connection[] {
  const open = conns.filter(c => c.status === 'open')
  if (open.length <= max) return []
  const dialer = (c: Connection): string => c.direction === 'outbound' ? self : c.remotePeer.toString()
  const sorted = [...open].sort((a, b) => dialer(a) < dialer(b) ? -1 : dialer(a) > dialer(b) ? 1 : a.timeline.open - b.timeline.open)
  return sorted.slice(max)
}
