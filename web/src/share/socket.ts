/**
 * The video socket of one space: `/api/v0/voice/ws?space=ID&media=video&token=T`, binary both ways
 * (wire.ts). It reconnects with capped exponential backoff and jitter, as the event stream does.
 * Our chunks are never queued behind a slow socket: past MAX_SEND_BUFFER_BYTES waiting, a chunk is
 * refused (and the capture sends a keyframe next).
 */
import { RECONNECT_MAX_MS, RECONNECT_MIN_MS } from '../api.ts'
import { decodePeerMsg, encodeShareMsg, encodeVideoMsg, type Chunk, type PeerMessage, type Vec3 } from './wire.ts'

/** Our chunks are refused while more than this waits to be sent (a couple of keyframes). */
export const MAX_SEND_BUFFER_BYTES = 256 * 1024

export interface ShareSocketHandlers {
  onMessage: (m: PeerMessage) => void
  onOpen: () => void
  onClose: () => void
}

export class ShareSocket {
  readonly space: string
  readonly counts = { sent: 0, refused: 0, received: 0, malformed: 0 }
  private readonly token: string
  private readonly h: ShareSocketHandlers
  private ws?: WebSocket
  private attempt = 0
  private timer?: ReturnType<typeof setTimeout>
  private stopped = false

  constructor (space: string, token: string, handlers: ShareSocketHandlers) {
    this.space = space
    this.token = token
    this.h = handlers
  }

  start (): void { this.stopped = false; this.connect() }

  stop (): void {
    this.stopped = true
    clearTimeout(this.timer)
    const ws = this.ws
    this.ws = undefined
    ws?.close(1000, 'done')
  }

  /** Our board's note (shown at `position`, or taken down). */
  send (b: { on: boolean, position: Vec3 }): void {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(encodeShareMsg(b.on, b.position))
  }

  /** One chunk of our stream; false when it was refused. */
  sendChunk (c: Chunk): boolean {
    const ws = this.ws
    if (ws?.readyState !== WebSocket.OPEN || ws.bufferedAmount > MAX_SEND_BUFFER_BYTES) { this.counts.refused++; return false }
    ws.send(encodeVideoMsg(c))
    this.counts.sent++
    return true
  }

  private connect (): void {
    let ws: WebSocket
    try {
      const proto = location.protocol === 'https:' ? 'wss:' : 'ws:'
      ws = new WebSocket(`${proto}//${location.host}/api/v0/voice/ws?space=${encodeURIComponent(this.space)}&media=video&token=${encodeURIComponent(this.token)}`)
    } catch {
      this.retry()
      return
    }
    ws.binaryType = 'arraybuffer'
    this.ws = ws
    ws.addEventListener('open', () => {
      if (this.ws !== ws) return
      this.attempt = 0
      this.h.onOpen()
    })
    ws.addEventListener('message', e => {
      if (this.ws !== ws || !(e.data instanceof ArrayBuffer)) return
      const m = decodePeerMsg(e.data)
      if (m instanceof Error) { this.counts.malformed++; return }
      this.counts.received++
      this.h.onMessage(m)
    })
    ws.addEventListener('close', () => {
      if (this.ws !== ws) return
      this.ws = undefined
      this.h.onClose()
      if (!this.stopped) this.retry()
    })
  }

  private retry (): void {
    const base = Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * 2 ** this.attempt)
    this.attempt++
    clearTimeout(this.timer)
    this.timer = setTimeout(() => { this.connect() }, Math.round(base / 2 + Math.random() * base / 2))
  }
}
