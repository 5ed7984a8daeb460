/**
 * The voice WebSocket of one space: `/api/v0/voice/ws?space=ID&token=T`, binary both ways. While
 * it is open our peer listens in that space and sends us the frames of the speakers we hear; we
 * send our microphone's frames on it. It reconnects as the video socket does (../socket.ts), and
 * not after the peer closed it for leaving the space. Frames are never queued behind a slow socket: past
 * MAX_SEND_BUFFER_BYTES waiting, ours are dropped (late voice is worse than lost voice). A burst
 * of frames (the encoder catching up after the page was busy) is paced out SEND_PACE_MS apart,
 * twice the real-time rate, so the peer takes them one by one; at most MAX_SEND_QUEUE wait, the
 * oldest dropped first.
 */
import { ReconnectingSocket, voiceSocketUrl } from '../socket.ts'
import { decodeHeardFrame, encodeOwnFrame, type HeardFrame, type OwnFrame } from './wire.ts'

/** Our frames are dropped while more than this waits to be sent. */
export const MAX_SEND_BUFFER_BYTES = 16 * 1024
/** Least time between two of our frames on the socket (ms), and frames held back at most. */
export const SEND_PACE_MS = 10
export const MAX_SEND_QUEUE = 10

export type VoiceSocketState = 'connecting' | 'open' | 'closed'

export interface VoiceSocketHandlers {
  onFrame: (f: HeardFrame) => void
  onState: (state: VoiceSocketState, detail?: { code?: number, reason?: string, retryInMs?: number }) => void
}

export class VoiceSocket {
  readonly space: string
  private readonly h: VoiceSocketHandlers
  private readonly socket: ReconnectingSocket
  /** Counts for display and tests. */
  readonly counts = { sent: 0, dropped: 0, received: 0, malformed: 0 }

  constructor (space: string, token: string, handlers: VoiceSocketHandlers) {
    this.space = space
    this.h = handlers
    this.socket = new ReconnectingSocket(() => voiceSocketUrl(space, token), {
      onConnecting: () => { this.h.onState('connecting') },
      onOpen: () => { this.h.onState('open') },
      onMessage: data => {
        const f = decodeHeardFrame(data)
        if (f instanceof Error) { this.counts.malformed++; return }
        this.counts.received++
        this.h.onFrame(f)
      },
      onClose: detail => { this.h.onState('closed', detail) }
    })
  }

  get open (): boolean { return this.socket.ws != null }

  start (): void { this.socket.start() }

  stop (): void {
    clearTimeout(this.paceTimer)
    this.paceTimer = undefined
    this.queue.length = 0
    this.socket.stop()
  }

  /** Our frame, sent now or paced after the ones waiting; false when it was dropped (socket down). */
  send (f: OwnFrame): boolean {
    if (this.socket.ws == null) { this.counts.dropped++; return false }
    this.queue.push(encodeOwnFrame(f))
    while (this.queue.length > MAX_SEND_QUEUE) { this.queue.shift(); this.counts.dropped++ }
    this.drain()
    return true
  }

  private readonly queue: Array<Uint8Array<ArrayBuffer>> = []
  private lastSendAt = -Infinity
  private paceTimer?: ReturnType<typeof setTimeout>

  /** Sends the next waiting frame if the pace allows, and comes back for the rest. */
  private drain (): void {
    if (this.paceTimer != null) return
    const ws = this.socket.ws
    if (ws == null) { this.counts.dropped += this.queue.length; this.queue.length = 0; return }
    const wait = this.lastSendAt + SEND_PACE_MS - performance.now()
    if (wait > 0) {
      this.paceTimer = setTimeout(() => { this.paceTimer = undefined; this.drain() }, wait)
      return
    }
    const next = this.queue.shift()
    if (next == null) return
    if (ws.bufferedAmount > MAX_SEND_BUFFER_BYTES) this.counts.dropped++
    else { ws.send(next); this.counts.sent++ }
    this.lastSendAt = performance.now()
    if (this.queue.length > 0) this.paceTimer = setTimeout(() => { this.paceTimer = undefined; this.drain() }, SEND_PACE_MS)
  }
}
