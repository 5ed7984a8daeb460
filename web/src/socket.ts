/**
 * A WebSocket to our peer that reconnects with capped exponential backoff and jitter: the event
 * stream (text) and the voice and video sockets of a space (binary). A close with a code in
 * `finalCodes` (the peer left the space: SOCKET_CLOSE_LEFT_SPACE) is not retried: there is nothing
 * to reconnect to until the client opens a socket for a space again.
 */

/** First wait before reconnecting a socket to our peer. */
export const RECONNECT_MIN_MS = 500
/** Longest wait between reconnects (the backoff doubles up to this). */
export const RECONNECT_MAX_MS = 10_000

/** The peer's close code for a voice or video socket whose space it left (the API's VOICE_CLOSE_LEFT_SPACE). */
export const SOCKET_CLOSE_LEFT_SPACE = 4001

export interface SocketClose { code?: number, reason?: string, retryInMs?: number, attempt?: number }

export interface ReconnectingHandlers {
  /** About to open; `attempt` counts the failed tries since the last open. */
  onConnecting?: (attempt: number) => void
  onOpen: () => void
  /** A binary message. */
  onMessage?: (data: ArrayBuffer) => void
  /** A text message. */
  onText?: (data: string) => void
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

  /** Sends on the open socket; false when it is not open (the caller may try again later). */
  send (data: string | ArrayBuffer | ArrayBufferView): boolean {
    const ws = this.ws
    if (ws == null) return false
    ws.send(data as string)
    return true
  }

  private connect (): void {
    this.h.onConnecting?.(this.attempt)
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
      if (this.current !== ws) return
      if (e.data instanceof ArrayBuffer) this.h.onMessage?.(e.data)
      else if (typeof e.data === 'string') this.h.onText?.(e.data)
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
    this.h.onClose({ ...why, retryInMs: wait, attempt: this.attempt })
    clearTimeout(this.timer)
    this.timer = setTimeout(() => { this.connect() }, wait)
  }
}

/** The URL of the voice socket of `space` (with `&media=video`, its video socket). */
export function voiceSocketUrl (space: string, token: string, media?: 'video'): string {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:'
  return `${proto}//${location.host}/api/v0/voice/ws?space=${encodeURIComponent(space)}${media == null ? '' : `&media=${media}`}&token=${encodeURIComponent(token)}`
}
