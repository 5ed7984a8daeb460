/**
 * The client's only link to the world: its own peer's local API. The token arrives once in the
 * page URL (?token=), is kept in sessionStorage (this tab only) and stripped from the address bar;
 * fetches send it as a Bearer header, the event WebSocket as ?token= (browsers cannot set headers
 * on a WebSocket). The socket reconnects with capped exponential backoff.
 */

import { ReconnectingSocket } from './socket.ts'

const TOKEN_KEY = 'peerverse.token'

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
  private readonly socket: ReconnectingSocket

  constructor (api: Api, handlers: EventStreamHandlers) {
    this.socket = new ReconnectingSocket(() => api.eventsUrl(), {
      onConnecting: attempt => { handlers.onState('connecting', { attempt }) },
      onOpen: () => { handlers.onState('open') },
      onText: data => {
        let msg: EventMessage
        try { msg = JSON.parse(data) as EventMessage } catch { return }
        if (msg != null && typeof msg.type === 'string') handlers.onEvent(msg)
      },
      onClose: d => { if (d.retryInMs != null) handlers.onState('closed', { retryInMs: d.retryInMs, attempt: d.attempt }) }
    }, { finalCodes: [] })
  }

  get open (): boolean { return this.socket.ws != null }

  start (): void { this.socket.start() }

  stop (): void { this.socket.stop() }

  /** Sends a message if the socket is open; false when it is not (the caller may try again later). */
  send (msg: unknown): boolean { return this.socket.send(JSON.stringify(msg)) }
}
