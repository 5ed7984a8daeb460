/**
 * The client's only link to the world: its own peer's local API. The token arrives once in the
 * page URL (?token=), is kept in sessionStorage (this tab only) and stripped from the address bar;
 * fetches send it as a Bearer header, the event WebSocket as ?token= (browsers cannot set headers
 * on a WebSocket). The socket reconnects with capped exponential backoff.
 */

const TOKEN_KEY = 'peerverse.token'
/** First and largest wait before reconnecting the event stream. */
export const RECONNECT_MIN_MS = 500
export const RECONNECT_MAX_MS = 10_000

export class ApiError extends Error {
  name = 'ApiError'
  readonly status: number
  readonly code: string
  constructor (status: number, code: string, message: string) {
    super(message)
    this.status = status
    this.code = code
  }
}

/** Reads the token from the URL (then removes it from the address bar) or from this tab's storage. */
export function takeToken (): string | null {
  const url = new URL(location.href)
  const fromUrl = url.searchParams.get('token')
  if (fromUrl != null && fromUrl !== '') {
    try { sessionStorage.setItem(TOKEN_KEY, fromUrl) } catch {}
    url.searchParams.delete('token')
    history.replaceState(history.state, '', url.pathname + url.search + url.hash)
    return fromUrl
  }
  try { return sessionStorage.getItem(TOKEN_KEY) } catch { return null }
}

export class Api {
  readonly token: string

  constructor (token: string) {
    this.token = token
  }

  get authHeader (): Record<string, string> {
    return { authorization: `Bearer ${this.token}` }
  }

  /** A JSON request; throws ApiError with the server's {error, message}. */
  async request<T> (method: 'GET' | 'POST', path: string, body?: unknown, init: { signal?: AbortSignal } = {}): Promise<T> {
    let res: Response
    try {
      res = await fetch(path, {
        method,
        headers: { ...this.authHeader, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        body: body !== undefined ? JSON.stringify(body) : undefined,
        cache: 'no-store',
        signal: init.signal
      })
    } catch (err) {
      if ((err as Error).name === 'AbortError') throw err
      throw new ApiError(0, 'PeerUnreachable', 'your peer does not answer (is it still running?)')
    }
    return await readJson<T>(res)
  }

  get<T> (path: string, init?: { signal?: AbortSignal }): Promise<T> { return this.request<T>('GET', path, undefined, init) }
  post<T> (path: string, body: unknown = {}): Promise<T> { return this.request<T>('POST', path, body) }

  /** A POST answered with NDJSON lines (progress, then a last line): calls onLine for each, resolves to the last. */
  async postLines<T> (path: string, body: unknown, onLine: (line: T) => void): Promise<T | undefined> {
    let res: Response
    try {
      res = await fetch(path, { method: 'POST', headers: { ...this.authHeader, 'content-type': 'application/json' }, body: JSON.stringify(body), cache: 'no-store' })
    } catch {
      throw new ApiError(0, 'PeerUnreachable', 'your peer does not answer (is it still running?)')
    }
    if (!res.ok || res.body == null) return await readJson<T>(res)
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader()
    let buf = ''
    let last: T | undefined
    const take = (text: string): void => {
      if (text.trim() === '') return
      try { last = JSON.parse(text) as T } catch { return }
      onLine(last)
    }
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      buf += value
      let nl: number
      while ((nl = buf.indexOf('\n')) >= 0) {
        take(buf.slice(0, nl))
        buf = buf.slice(nl + 1)
      }
    }
    take(buf)
    return last
  }

  /** Uploads raw bytes (a file) to the content store; resolves to its CID. */
  async addContent (file: Blob, name: string): Promise<{ cid: string, size: number }> {
    let res: Response
    try {
      res = await fetch(`/api/v0/content/add?name=${encodeURIComponent(name)}`, { method: 'POST', headers: this.authHeader, body: file })
    } catch {
      throw new ApiError(0, 'PeerUnreachable', 'your peer does not answer (is it still running?)')
    }
    return await readJson(res)
  }

  eventsUrl (): string {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:'
    return `${proto}//${location.host}/api/v0/events?token=${encodeURIComponent(this.token)}`
  }
}

async function readJson<T> (res: Response): Promise<T> {
  let json: unknown
  try {
    json = await res.json()
  } catch {
    throw new ApiError(res.status, 'BadResponse', `HTTP ${res.status} ${res.statusText}`)
  }
  if (!res.ok) {
    const e = json as { error?: unknown, message?: unknown }
    throw new ApiError(res.status, String(e?.error ?? res.status), String(e?.message ?? res.statusText))
  }
  return json as T
}

export type EventMessage = { type: string, [key: string]: unknown }

export interface EventStreamHandlers {
  onEvent: (msg: EventMessage) => void
  onState: (state: 'connecting' | 'open' | 'closed', detail?: { retryInMs?: number, attempt?: number }) => void
}

/** The peer's event WebSocket, kept open: reconnects with exponential backoff and jitter. */
export class EventStream {
  private readonly api: Api
  private readonly h: EventStreamHandlers
  private ws?: WebSocket
  private attempt = 0
  private timer?: ReturnType<typeof setTimeout>
  private stopped = false

  constructor (api: Api, handlers: EventStreamHandlers) {
    this.api = api
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
    this.ws?.close()
  }

  /** Sends a message if the socket is open; false when it is not (the caller may try again later). */
  send (msg: unknown): boolean {
    if (this.ws?.readyState !== WebSocket.OPEN) return false
    this.ws.send(JSON.stringify(msg))
    return true
  }

  private connect (): void {
    this.h.onState('connecting', { attempt: this.attempt })
    let ws: WebSocket
    try {
      ws = new WebSocket(this.api.eventsUrl())
    } catch {
      this.retry()
      return
    }
    this.ws = ws
    ws.addEventListener('open', () => {
      this.attempt = 0
      this.h.onState('open')
    })
    ws.addEventListener('message', e => {
      if (typeof e.data !== 'string') return
      let msg: EventMessage
      try { msg = JSON.parse(e.data) as EventMessage } catch { return }
      if (msg != null && typeof msg.type === 'string') this.h.onEvent(msg)
    })
    ws.addEventListener('close', () => {
      if (this.ws !== ws) return
      this.ws = undefined
      if (!this.stopped) this.retry()
    })
  }

  private retry (): void {
    const base = Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * 2 ** this.attempt)
    const wait = Math.round(base / 2 + Math.random() * base / 2)
    this.attempt++
    this.h.onState('closed', { retryInMs: wait, attempt: this.attempt })
    clearTimeout(this.timer)
    this.timer = setTimeout(() => { this.connect() }, wait)
  }
}
