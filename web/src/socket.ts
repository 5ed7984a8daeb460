/**
 * A binary WebSocket to our peer that reconnects with capped exponential backoff and jitter (as
 * the event stream does), for the voice and video sockets of a space. A close with a code in
 * `finalCodes` (the peer left the space: SOCKET_CLOSE_LEFT_SPACE) is not retried: there is nothing
 * to reconnect to until the client opens a socket for a space again.
 */
import { RECONNECT_MAX_MS, RECONNECT_MIN_MS } from './api.ts'

/** The peer's close code for a voice or video socket whose space it left (the API's VOICE_CLOSE_LEFT_SPACE). */
export const SOCKET_CLOSE_LEFT_SPACE = 4001

export interface SocketClose { code?: number, reason?: string, retryInMs?: number }

export interface ReconnectingHandlers {
  onConnecting?: () => void
  onOpen: () => void
  onMessage: (data: ArrayBuffer) => void
  /** Closed (or failed to open); `retryInMs` unset when it will not be retried. */
  onClose: (detail: SocketClose) => void
}

export class ReconnectingSocket {
  private readonly url: () => string
  private readonly h: ReconnectingHandlers
  private readonly finalCodes: ReadonlySet<number>
  private current?: WebSocket
  private attempt = 0
  private timer?: ReturnType<typeof setTimeout>
  private stopped = true

  constructor (url: () => string, handlers: ReconnectingHandlers, options: { finalCodes?: number[] } = {}) {
    this.url = url
    this.h = handlers
    this.finalCodes = new Set(options.finalCodes ?? [SOCKET_CLOSE_LEFT_SPACE])
  }

  /** The socket while it is open (undefined otherwise). */
  get ws (): WebSocket | undefined { return this.current?.readyState === WebSocket.OPEN ? this.current : undefined }

  start (): void {
    this.stopped = false
    this.connect()
  }

  stop (): void {
    this.stopped = true
    clearTimeout(this.timer)
    const ws = this.current
    this.current = undefined
    ws?.close(1000, 'done')
  }

  private connect (): void {
    this.h.onConnecting?.()
    let ws: WebSocket
    try {
      ws = new WebSocket(this.url())
    } catch {
      this.retry({})
      return
    }
    ws.binaryType = 'arraybuffer'
    this.current = ws
    ws.addEventListener('open', () => {
      if (this.current !== ws) return
      this.attempt = 0
      this.h.onOpen()
    })
    ws.addEventListener('message', e => {
      if (this.current !== ws || !(e.data instanceof ArrayBuffer)) return
      this.h.onMessage(e.data)
    })
    ws.addEventListener('close', e => {
      if (this.current !== ws) return
      this.current = undefined
      if (this.stopped) return
      if (this.finalCodes.has(e.code)) { this.stopped = true; this.h.onClose({ code: e.code, reason: e.reason }); return }
      this.retry({ code: e.code, reason: e.reason })
    })
  }

  private retry (why: SocketClose): void {
    const base = Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * 2 ** this.attempt)
    const wait = Math.round(base / 2 + Math.random() * base / 2)
    this.attempt++
    this.h.onClose({ ...why, retryInMs: wait })
    clearTimeout(this.timer)
    this.timer = setTimeout(() => { this.connect() }, wait)
  }
}

/** The URL of the voice socket of `space` (with `&media=video`, its video socket). */
export function voiceSocketUrl (space: string, token: string, media?: 'video'): string {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:'
  return `${proto}//${location.host}/api/v0/voice/ws?space=${encodeURIComponent(space)}${media == null ? '' : `&media=${media}`}&token=${encodeURIComponent(token)}`
}
