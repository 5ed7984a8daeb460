/**
 * The voice WebSocket of one space: `/api/v0/voice/ws?space=ID&token=T`, binary both ways. While
 * it is open our peer listens in that space and sends us the frames of the speakers we hear; we
 * send our microphone's frames on it. It reconnects with capped exponential backoff and jitter,
 * as the event stream does. Frames are never queued behind a slow socket: past
 * MAX_SEND_BUFFER_BYTES waiting, ours are dropped (late voice is worse than lost voice).
 */
import { RECONNECT_MAX_MS, RECONNECT_MIN_MS } from '../api.ts'
import { decodeHeardFrame, encodeOwnFrame, type HeardFrame, type OwnFrame } from './wire.ts'

/** Our frames are dropped while more than this waits to be sent. */
export const MAX_SEND_BUFFER_BYTES = 16 * 1024

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
    const ws = this.ws
    this.ws = undefined
    ws?.close(1000, 'done')
  }

  /** Our frame; false when it was dropped (socket down or backed up). */
  send (f: OwnFrame): boolean {
    const ws = this.ws
    if (ws?.readyState !== WebSocket.OPEN || ws.bufferedAmount > MAX_SEND_BUFFER_BYTES) { this.counts.dropped++; return false }
    ws.send(encodeOwnFrame(f))
    this.counts.sent++
    return true
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
