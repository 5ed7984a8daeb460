/**
 * The voice WebSocket of one space: `/api/v0/voice/ws?space=ID&token=T`, binary both ways. While
 * it is open our peer listens in that space and sends us the frames of the speakers we hear; we
 * send our microphone's frames on it. It reconnects with capped exponential backoff and jitter,
 * as the event stream does. Frames are never queued behind a slow socket: past
 * MAX_SEND_BUFFER_BYTES waiting, ours are dropped (late voice is worse than lost voice). A burst
 * of frames (the encoder catching up after the page was busy) is paced out SEND_PACE_MS apart,
 * twice the real-time rate, so the peer takes them one by one; at most MAX_SEND_QUEUE wait, the
 * oldest dropped first.
 */
import { RECONNECT_MAX_MS, RECONNECT_MIN_MS } from '../api.ts'
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
  private readonly token: string
  private readonly h: VoiceSocketHandlers
  private ws?: WebSocket
  private attempt = 0
  private timer?: ReturnType<typeof setTimeout>
  private stopped = false
  /** Counts for display and tests. */
  readonly counts = { sent: 0, dropped: 0, received: 0, malformed: 0 }

  constructor (space: string, token: string, handlers: VoiceSocketHandlers) {
    this.space = space
    this.token = token
    this.h = handlers
  }

  get open (): boolean { return this.ws?.readyState === WebSocket.OPEN }

  start (): void {
    this.stopped = false
    this.connect()
  }

  stop (): void {
    this.stopped = true
    clearTimeout(this.timer)
    clearTimeout(this.paceTimer)
    this.paceTimer = undefined
    this.queue.length = 0
    const ws = this.ws
    this.ws = undefined
    ws?.close(1000, 'done')
  }

  /** Our frame, sent now or paced after the ones waiting; false when it was dropped (socket down). */
  send (f: OwnFrame): boolean {
    if (this.ws?.readyState !== WebSocket.OPEN) { this.counts.dropped++; return false }
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
    const ws = this.ws
    if (ws?.readyState !== WebSocket.OPEN) { this.counts.dropped += this.queue.length; this.queue.length = 0; return }
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

  private url (): string {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:'
    return `${proto}//${location.host}/api/v0/voice/ws?space=${encodeURIComponent(this.space)}&token=${encodeURIComponent(this.token)}`
  }

  private connect (): void {
    this.h.onState('connecting')
    let ws: WebSocket
    try {
      ws = new WebSocket(this.url())
    } catch {
      this.retry()
      return
    }
    ws.binaryType = 'arraybuffer'
    this.ws = ws
    ws.addEventListener('open', () => {
      if (this.ws !== ws) return
      this.attempt = 0
      this.h.onState('open')
    })
    ws.addEventListener('message', e => {
      if (this.ws !== ws || !(e.data instanceof ArrayBuffer)) return
      const f = decodeHeardFrame(e.data)
      if (f instanceof Error) { this.counts.malformed++; return }
      this.counts.received++
      this.h.onFrame(f)
    })
    ws.addEventListener('close', e => {
      if (this.ws !== ws) return
      this.ws = undefined
      if (!this.stopped) this.retry({ code: e.code, reason: e.reason })
    })
  }

  private retry (why: { code?: number, reason?: string } = {}): void {
    const base = Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * 2 ** this.attempt)
    const wait = Math.round(base / 2 + Math.random() * base / 2)
    this.attempt++
    this.h.onState('closed', { ...why, retryInMs: wait })
    clearTimeout(this.timer)
    this.timer = setTimeout(() => { this.connect() }, wait)
  }
}
