/**
 * Node-only: the local API, HTTP + WebSocket on 127.0.0.1, for the CLI and the browser client.
 * Every /api and /content request needs this run's token (Authorization: Bearer; `?token=` only on
 * the event WebSocket and GET /content, which a browser loads by URL), a Host header naming this
 * server (DNS rebinding) and, when an Origin is sent, our own origin (CSRF). One endpoint needs no
 * token: the challenge by which the CLI checks it speaks to our peer before it sends the token
 * (auth.ts). A request body may take as long as it likes while its bytes keep coming; one that
 * stalls for the idle limit gets 408. The browser client's static files (web/dist, built by
 * Vite) hold no secret and are served without the token, with the same Host check and a strict
 * CSP; the token reaches the page only in the URL the peer prints. The IPFS trustless gateway
 * (/ipfs/, routes/gateway.ts) needs the token unless the `gateway.open` setting opens it.
 * Bodies, event clients and their buffers are bounded by the constants below.
 */
import { timingSafeEqual } from 'node:crypto'
import { rm, writeFile, rename } from 'node:fs/promises'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join, resolve } from 'node:path'
import { WebSocketServer, type WebSocket } from 'ws'
import { EVENT_NAMES, type PeerverseNode, type NodeEvents } from '../node/node.ts'
import { API_INFO_FILE, API_PROOF_PATH, API_TOKEN_FILE, apiProof, InvalidNonceError, queryTokenAllowed } from './auth.ts'
import { ApiError } from './errors.ts'
import { findRoute, type Route } from './routes.ts'
import { contentRoutes, serveContent } from './routes/content.ts'
import { ledgerRoutes } from './routes/ledger.ts'
import { nodeRoutes } from './routes/node.ts'
import { socialRoutes } from './routes/social.ts'
import { spaceRoutes, spaceSocketMessages } from './routes/space.ts'
import { directoryRoutes } from './routes/directory.ts'
import { GATEWAY_PREFIX, serveGateway } from './routes/gateway.ts'
import { checkVoiceUpgrade, MAX_VOICE_WS_PAYLOAD_BYTES, serveVoiceSocket, voiceRoutes, VOICE_SOCKET_PATH } from './routes/voice.ts'
import { DEFAULT_WEB_ROOT, serveStatic } from './static.ts'

export { CONTENT_FIRST_BYTE_TIMEOUT_MS, FETCH_PROGRESS_INTERVAL_MS, MAX_API_DIRECTORY_ENTRIES } from './routes/content.ts'
export { MAX_API_SUBMIT_BATCH_TXS, SUBMIT_BATCH_SLICE_MS } from './routes/ledger.ts'
export { MAX_API_DENY_PEERS } from './routes/node.ts'
export { DEFAULT_WEB_ROOT, MAX_STATIC_FILE_BYTES } from './static.ts'
export { MAX_VOICE_CLIENTS, MAX_VOICE_CLIENT_BUFFER_BYTES, MAX_VOICE_WS_PAYLOAD_BYTES, VOICE_CLOSE_LEFT_SPACE, VOICE_SOCKET_PATH } from './routes/voice.ts'
export { API_INFO_FILE, API_PROOF_PATH, API_TOKEN_FILE, createApiToken } from './auth.ts'

/** Every route of the API, one table per capability, tried in order. */
export const ROUTES: readonly Route[] = [...nodeRoutes, ...contentRoutes, ...socialRoutes, ...ledgerRoutes, ...spaceRoutes, ...directoryRoutes, ...voiceRoutes]

/** Messages a client may send on the event WebSocket, by type. */
const SOCKET_MESSAGES: Record<string, (node: PeerverseNode, msg: Record<string, unknown>) => void> = { ...spaceSocketMessages }

/** Largest request body. */
export const MAX_API_BODY_BYTES = 1024 * 1024
/** Event-stream clients at once. */
export const MAX_API_EVENT_CLIENTS = 32
/** Bytes queued for one slow event client before it is dropped. */
export const MAX_API_EVENT_BUFFER_BYTES = 4 * 1024 * 1024
/** Largest WebSocket message a client may send us. */
export const MAX_API_WS_MESSAGE_BYTES = 64 * 1024
/** Time a DHT lookup or a dial requested through the API may take. */
export const API_OPERATION_TIMEOUT_MS = 30_000
/** Time a request may send no bytes before a stalled body is answered 408 (stalled headers: the connection closes); nothing limits the whole. */
export const API_IDLE_TIMEOUT_MS = 30_000

export class ApiPortInUseError extends Error {
  name = 'ApiPortInUseError'
}

import type { ApiInfo } from './info.ts'
export { readApiInfo, type ApiInfo } from './info.ts'

/** The event stream sends every event the node and its capabilities emit, by their exported names. */
const EVENT_TYPES: ReadonlyArray<keyof NodeEvents> = EVENT_NAMES

function eventJson (type: string, detail: unknown): string {
  if (type === 'gossip:message') {
    const d = detail as { topic: string, from: string, data: Uint8Array }
    return JSON.stringify({ type, topic: d.topic, from: d.from, data: Buffer.from(d.data).toString('base64') })
  }
  return JSON.stringify({ type, ...(detail as object) })
}

export interface ApiServerInit {
  host?: string
  port?: number
  token: string
  /** Directory of the built browser client (default web/dist); null serves no client. */
  webRoot?: string | null
  /** Time a request may send no bytes before it is answered 408 (default API_IDLE_TIMEOUT_MS). */
  idleTimeoutMs?: number
}

export class ApiServer {
  private readonly node: PeerverseNode
  private readonly host: string
  private readonly requestedPort: number
  private readonly token: Buffer
  private readonly webRoot: string | null
  private readonly idleTimeoutMs: number
  private server?: Server
  private wss?: WebSocketServer
  /** Voice sockets (binary Opus frames), apart from the event stream's clients. */
  private voiceWss?: WebSocketServer
  private port = 0
  private readonly listeners: Array<[string, EventListener]> = []

  constructor (node: PeerverseNode, init: ApiServerInit) {
    this.node = node
    this.host = init.host ?? '127.0.0.1'
    this.requestedPort = init.port ?? 0
    this.token = Buffer.from(init.token)
    this.webRoot = init.webRoot === null ? null : resolve(init.webRoot ?? DEFAULT_WEB_ROOT)
    this.idleTimeoutMs = init.idleTimeoutMs ?? API_IDLE_TIMEOUT_MS
  }

  get url (): string {
    const h = this.host.includes(':') ? `[${this.host}]` : this.host
    return `http://${h}:${this.port}`
  }

  /** The browser client's address with the token (what `peerverse start` prints). */
  get clientUrl (): string {
    return `${this.url}/?token=${encodeURIComponent(this.token.toString())}`
  }

  async start (): Promise<void> {
    if (this.server != null) return
    const server = createServer((req, res) => { void this.handle(req, res) })
    // No limit on a whole request (a slow honest upload keeps going while its bytes come); an
    // idle socket times out instead: a stalled body is answered 408 (see handle), a connection
    // with no request is closed, and one whose answer is being worked on is left alone.
    server.requestTimeout = 0
    server.timeout = this.idleTimeoutMs
    const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_API_WS_MESSAGE_BYTES })
    const voiceWss = new WebSocketServer({ noServer: true, maxPayload: MAX_VOICE_WS_PAYLOAD_BYTES })
    this.voiceWss = voiceWss
    server.on('upgrade', (req, socket, head) => {
      try {
        this.authorize(req, true)
        const url = new URL(req.url ?? '/', 'http://local')
        if (url.pathname === VOICE_SOCKET_PATH) {
          const space = checkVoiceUpgrade(this.node, url, voiceWss.clients.size)
          voiceWss.handleUpgrade(req, socket, head, ws => { serveVoiceSocket(this.node, ws, space, url.searchParams.get('media')) })
          return
        }
        if (url.pathname !== '/api/v0/events') throw new ApiError(404, 'NotFound', 'no such endpoint')
        if (wss.clients.size >= MAX_API_EVENT_CLIENTS) throw new ApiError(503, 'TooManyClients', 'too many event clients')
      } catch (err) {
        const e = err instanceof ApiError ? err : new ApiError(400, 'BadRequest', 'bad upgrade')
        socket.end(`HTTP/1.1 ${e.status} ${e.code}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`)
        return
      }
      wss.handleUpgrade(req, socket, head, ws => { this.addEventClient(ws) })
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => {
        reject(err.code === 'EADDRINUSE' ? new ApiPortInUseError(`API port ${this.host}:${this.requestedPort} is in use`) : err)
      })
      server.listen(this.requestedPort, this.host, () => { resolve() })
    })
    this.port = (server.address() as AddressInfo).port
    this.server = server
    this.wss = wss
    for (const type of EVENT_TYPES) {
      const fn = ((evt: CustomEvent) => { this.broadcast(eventJson(type, evt.detail)) }) as EventListener
      this.node.addEventListener(type, fn)
      this.listeners.push([type, fn])
    }
    const info: ApiInfo = { url: this.url, pid: process.pid, peerId: this.node.peerId, did: this.node.did }
    const path = join(this.node.config.dataDir, API_INFO_FILE)
    await writeFile(path + '.tmp', JSON.stringify(info, null, 2) + '\n', { mode: 0o600 })
    await rename(path + '.tmp', path)
  }

  async stop (): Promise<void> {
    const server = this.server
    if (server == null) return
    this.server = undefined
    for (const [type, fn] of this.listeners) this.node.removeEventListener(type as keyof NodeEvents, fn)
    this.listeners.length = 0
    for (const ws of [...this.wss?.clients ?? [], ...this.voiceWss?.clients ?? []]) ws.terminate()
    this.wss?.close()
    this.voiceWss?.close()
    server.closeAllConnections()
    await new Promise<void>(resolve => { server.close(() => { resolve() }) })
    await rm(join(this.node.config.dataDir, API_INFO_FILE), { force: true })
  }

  private addEventClient (ws: WebSocket): void {
    ws.send(JSON.stringify({ type: 'hello', peerId: this.node.peerId, did: this.node.did }))
    // The client's moves come this way (up to 20 a second), not as HTTP requests.
    ws.on('message', data => {
      try {
        const msg = JSON.parse(data.toString()) as Record<string, unknown> | null
        const handler = typeof msg?.type === 'string' && Object.hasOwn(SOCKET_MESSAGES, msg.type) ? SOCKET_MESSAGES[msg.type] : undefined
        if (msg == null || handler == null) throw new ApiError(400, 'BadRequest', 'unknown message type')
        handler(this.node, msg)
      } catch (err) {
        const e = err as Error
        if (ws.bufferedAmount < MAX_API_EVENT_BUFFER_BYTES) ws.send(JSON.stringify({ type: 'error', error: e instanceof ApiError ? e.code : e.name, message: e.message }))
      }
    })
    ws.on('error', () => { ws.terminate() })
  }

  private broadcast (json: string): void {
    for (const ws of this.wss?.clients ?? []) {
      if (ws.bufferedAmount > MAX_API_EVENT_BUFFER_BYTES) {
        ws.terminate()
        continue
      }
      ws.send(json)
    }
  }

  private allowedHosts (): Set<string> {
    return new Set([`127.0.0.1:${this.port}`, `localhost:${this.port}`, `[::1]:${this.port}`, `${this.host.includes(':') ? `[${this.host}]` : this.host}:${this.port}`])
  }

  /** Host, Origin and token checks; throws ApiError. */
  private authorize (req: IncomingMessage, upgrade = false): void {
    this.checkHostAndOrigin(req)
    const url = new URL(req.url ?? '/', 'http://local')
    const fromQuery = url.searchParams.get('token')
    if (fromQuery != null && !queryTokenAllowed(req.method ?? 'GET', url.pathname, upgrade)) {
      throw new ApiError(401, 'QueryTokenRefused', 'the API token is taken from ?token= only on the event WebSocket and GET /content; send it as Authorization: Bearer')
    }
    let presented: string | undefined
    const auth = req.headers.authorization
    if (auth?.startsWith('Bearer ') === true) presented = auth.slice(7).trim()
    else presented = fromQuery ?? undefined
    const given = Buffer.from(presented ?? '')
    if (given.length !== this.token.length || !timingSafeEqual(given, this.token)) {
      throw new ApiError(401, 'Unauthorized', 'missing or wrong API token')
    }
  }

  /** The Host (DNS rebinding) and Origin (CSRF) checks; throws ApiError. */
  private checkHostAndOrigin (req: IncomingMessage): void {
    const hosts = this.allowedHosts()
    const host = req.headers.host
    if (host == null || !hosts.has(host.toLowerCase())) throw new ApiError(403, 'ForbiddenHost', 'Host header does not name this peer')
    const origin = req.headers.origin
    if (origin != null) {
      let originHost: string
      try {
        const u = new URL(origin)
        if (u.protocol !== 'http:') throw new Error('scheme')
        originHost = u.host
      } catch {
        throw new ApiError(403, 'ForbiddenOrigin', 'foreign origin')
      }
      if (!hosts.has(originHost.toLowerCase())) throw new ApiError(403, 'ForbiddenOrigin', 'foreign origin')
    }
  }

  private async readJson (req: IncomingMessage): Promise<Record<string, unknown>> {
    const declared = Number(req.headers['content-length'] ?? 0)
    if (declared > MAX_API_BODY_BYTES) throw new ApiError(413, 'BodyTooLarge', `body over ${MAX_API_BODY_BYTES} bytes`)
    const chunks: Buffer[] = []
    let size = 0
    for await (const chunk of req) {
      size += (chunk as Buffer).length
      if (size > MAX_API_BODY_BYTES) throw new ApiError(413, 'BodyTooLarge', `body over ${MAX_API_BODY_BYTES} bytes`)
      chunks.push(chunk as Buffer)
    }
    if (size === 0) return {}
    try {
      const value = JSON.parse(Buffer.concat(chunks).toString('utf8'))
      if (value == null || typeof value !== 'object' || Array.isArray(value)) throw new Error('not an object')
      return value
    } catch {
      throw new ApiError(400, 'InvalidJson', 'body must be a JSON object')
    }
  }

  /** The challenge: proves this peer holds the token without it leaving (auth.ts). */
  private answerProof (req: IncomingMessage, res: ServerResponse, url: URL): void {
    this.checkHostAndOrigin(req)
    if (req.method !== 'GET') throw new ApiError(405, 'MethodNotAllowed', `${req.method ?? ''} is not allowed here`)
    try {
      send(res, 200, { proof: apiProof(this.token.toString(), this.url, url.searchParams.get('nonce') ?? '') })
    } catch (err) {
      if (err instanceof InvalidNonceError) throw new ApiError(400, 'InvalidNonce', err.message)
      throw err
    }
  }

  /** Answers 408 to a request whose body stopped coming for the idle limit, and hangs up. */
  private stalled (req: IncomingMessage, res: ServerResponse): void {
    // The socket, taken now: once the answer is sent the request lets go of it (req.socket is null).
    const socket = req.socket
    if (!res.headersSent) {
      const json = JSON.stringify({ error: 'RequestTimeout', message: `no request bytes for ${this.idleTimeoutMs} ms` })
      res.writeHead(408, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(json), connection: 'close', 'cache-control': 'no-store' })
      res.end(json, () => { socket?.destroy() })
    } else {
      socket?.destroy()
    }
  }

  private async handle (req: IncomingMessage, res: ServerResponse): Promise<void> {
    // The idle limit runs from this request's start (a kept-alive socket had another one set).
    req.socket.setTimeout(this.idleTimeoutMs)
    req.on('timeout', () => { this.stalled(req, res) })
    res.on('timeout', () => {})
    try {
      const url = new URL(req.url ?? '/', 'http://local')
      if (url.pathname === API_PROOF_PATH) {
        this.answerProof(req, res, url)
        return
      }
      if (url.pathname.startsWith(GATEWAY_PREFIX)) {
        // The trustless gateway: the token unless gateway.open; Host and Origin checks always.
        this.checkHostAndOrigin(req)
        if (this.node.config.gateway?.open !== true) this.authorize(req)
        await serveGateway(this.node, req, res, url)
        return
      }
      if (!url.pathname.startsWith('/api/') && !url.pathname.startsWith('/content/')) {
        this.checkHostAndOrigin(req)
        await serveStatic(this.webRoot, req, res, url)
        return
      }
      this.authorize(req)
      if ((req.method === 'GET' || req.method === 'HEAD') && url.pathname.startsWith('/content/')) {
        await serveContent(this.node, req, res, url)
        return
      }
      const method = req.method ?? 'GET'
      const found = findRoute(ROUTES, method, url.pathname)
      if (found == null) throw new ApiError(404, 'NotFound', `no endpoint ${method} ${url.pathname}`)
      let body: Record<string, unknown> | undefined
      const result = await found.route.handle({
        node: this.node,
        req,
        res,
        url,
        rest: found.rest,
        body: async () => (body ??= await this.readJson(req)),
        signal: AbortSignal.timeout(API_OPERATION_TIMEOUT_MS)
      })
      if (found.route.raw !== true) send(res, 200, result)
    } catch (err) {
      if (res.headersSent) {
        res.destroy()
      } else if (err instanceof ApiError) {
        send(res, err.status, { error: err.code, message: err.message })
      } else {
        const e = err as Error
        send(res, errorStatus(e), { error: e.name ?? 'Error', message: e.message })
      }
    }
  }
}

/** HTTP status for an error thrown by the node. */
function errorStatus (e: Error): number {
  switch (e.name) {
    case 'NotFoundError': case 'PathNotFoundError': case 'BlockNotFoundError': case 'NoProvidersError': case 'SpaceNotFoundError': case 'NotJoinedError': case 'UnknownObjectError': return 404
    case 'NotSpaceOwnerError': case 'EditNotAllowedError': case 'ExcludedError': case 'NotAMemberError': return 403
    case 'SpaceRateLimitError': return 429
    case 'AbortError': case 'TimeoutError': return 504
    case 'StoreFullError': case 'DiskFullError': case 'StoreWriteError': return 507
    case 'MempoolFullError': case 'SenderLimitError': return 503
    case 'UnsupportedContentError': case 'NotADirectoryError': case 'InvalidEntryError': return 422
    default: return /not found/i.test(e.message) ? 404 : 400
  }
}

function send (res: ServerResponse, status: number, body: unknown): void {
  const json = JSON.stringify(body)
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(json),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff'
  })
  res.end(json)
}
