/**
 * The local API: HTTP + WebSocket on 127.0.0.1, for the CLI and the browser client.
 * Every /api and /content request needs the data dir's token (Authorization: Bearer, or ?token=
 * for a WebSocket or a media element), a Host header naming this server (DNS rebinding) and, when
 * an Origin is sent, our own origin (CSRF). The browser client's static files (web/dist, built by
 * Vite) hold no secret and are served without the token, with the same Host check and a strict
 * CSP; the token reaches the page only in the URL the peer prints. Bodies, event clients and their
 * buffers are bounded by the constants below.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto'
import { constants } from 'node:fs'
import { open, readFile, rm, writeFile, rename } from 'node:fs/promises'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { extname, join, resolve, sep } from 'node:path'
import { fileURLToPath } from 'node:url'
import { WebSocketServer, type WebSocket } from 'ws'
import type { PeerverseNode, NodeEvents } from '../node/node.ts'
import { contentRangeHeader, contentType, parseCid, parseRange, RangeNotSatisfiableError, SNIFF_BYTES, unsatisfiedRangeHeader } from '../content/index.ts'
import { CID } from 'multiformats/cid'
import type { Entry, EntryPayload } from '../social/feed.ts'
import type { Tx } from '../ledger/tx.ts'
import { ApiError } from './errors.ts'

export const API_TOKEN_FILE = 'api-token'
export const API_INFO_FILE = 'api.json'
/** Largest request body. */
export const MAX_API_BODY_BYTES = 1024 * 1024
/** Signed transactions in one POST /api/v0/ledger/submit-batch. */
export const MAX_API_SUBMIT_BATCH_TXS = 512
/** A submit-batch request checks transactions for at most this long before yielding to other work. */
export const SUBMIT_BATCH_SLICE_MS = 4
/** Event-stream clients at once. */
export const MAX_API_EVENT_CLIENTS = 32
/** Bytes queued for one slow event client before it is dropped. */
export const MAX_API_EVENT_BUFFER_BYTES = 4 * 1024 * 1024
/** Largest WebSocket message a client may send us. */
export const MAX_API_WS_MESSAGE_BYTES = 64 * 1024
/** Time a DHT lookup or a dial requested through the API may take. */
export const API_OPERATION_TIMEOUT_MS = 30_000
/** Time a content read may wait for the swarm before its first byte. */
export const CONTENT_FIRST_BYTE_TIMEOUT_MS = 60_000
/** Entries in one directory-building request. */
export const MAX_API_DIRECTORY_ENTRIES = 1024
/** Peers in one deny list. */
export const MAX_API_DENY_PEERS = 1024
/** Interval between progress lines of a fetch. */
export const FETCH_PROGRESS_INTERVAL_MS = 250
/** Where `vite build` puts the browser client (see vite.config.ts). */
export const DEFAULT_WEB_ROOT = fileURLToPath(new URL('../../web/dist/', import.meta.url))
/** Largest static file of the client we serve (the three.js bundle is well under it). */
export const MAX_STATIC_FILE_BYTES = 16 * 1024 * 1024

const STATIC_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.wasm': 'application/wasm',
  '.map': 'application/json; charset=utf-8'
}

export class ApiPortInUseError extends Error {
  name = 'ApiPortInUseError'
}

export interface ApiInfo {
  url: string
  pid: number
  peerId: string
  did: string
}

/** Reads the token of a data dir, creating it (owner-only) on first use. */
export async function ensureApiToken (dataDir: string): Promise<string> {
  const path = join(dataDir, API_TOKEN_FILE)
  try {
    const handle = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600)
    const token = randomBytes(32).toString('base64url')
    await handle.writeFile(token + '\n')
    await handle.close()
    return token
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    return (await readFile(path, 'utf8')).trim()
  }
}

export async function readApiInfo (dataDir: string): Promise<ApiInfo & { token: string }> {
  const info = JSON.parse(await readFile(join(dataDir, API_INFO_FILE), 'utf8')) as ApiInfo
  const token = (await readFile(join(dataDir, API_TOKEN_FILE), 'utf8')).trim()
  return { ...info, token }
}

const EVENT_TYPES: Array<keyof NodeEvents> = ['peer:connect', 'peer:disconnect', 'peer:identified', 'gossip:message', 'peer:rejected', 'bootstrap:error', 'feed:entry', 'feed:fork', 'ledger:block', 'ledger:receipt', 'ledger:evidence', 'space:presence', 'space:leave', 'space:chat', 'space:world', 'space:policy']

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
}

export class ApiServer {
  private readonly node: PeerverseNode
  private readonly host: string
  private readonly requestedPort: number
  private readonly token: Buffer
  private readonly webRoot: string | null
  private server?: Server
  private wss?: WebSocketServer
  private port = 0
  private readonly listeners: Array<[string, EventListener]> = []

  constructor (node: PeerverseNode, init: ApiServerInit) {
    this.node = node
    this.host = init.host ?? '127.0.0.1'
    this.requestedPort = init.port ?? 0
    this.token = Buffer.from(init.token)
    this.webRoot = init.webRoot === null ? null : resolve(init.webRoot ?? DEFAULT_WEB_ROOT)
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
    server.requestTimeout = API_OPERATION_TIMEOUT_MS * 2
    const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_API_WS_MESSAGE_BYTES })
    server.on('upgrade', (req, socket, head) => {
      try {
        this.authorize(req)
        const url = new URL(req.url ?? '/', 'http://local')
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
    for (const ws of this.wss?.clients ?? []) ws.terminate()
    this.wss?.close()
    server.closeAllConnections()
    await new Promise<void>(resolve => { server.close(() => { resolve() }) })
    await rm(join(this.node.config.dataDir, API_INFO_FILE), { force: true })
  }

  private addEventClient (ws: WebSocket): void {
    ws.send(JSON.stringify({ type: 'hello', peerId: this.node.peerId, did: this.node.did }))
    // The client's moves come this way (up to 20 a second), not as HTTP requests.
    ws.on('message', data => {
      try {
        const msg = JSON.parse(data.toString()) as { type?: unknown, space?: unknown, position?: unknown, rotation?: unknown }
        if (msg?.type !== 'space:move') throw new ApiError(400, 'BadRequest', 'unknown message type')
        this.node.space.move(String(msg.space), vec(msg.position, 3, 'position') as [number, number, number], msg.rotation == null ? undefined : vec(msg.rotation, 4, 'rotation') as [number, number, number, number])
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
  private authorize (req: IncomingMessage): void {
    this.checkHostAndOrigin(req)
    let presented: string | undefined
    const auth = req.headers.authorization
    if (auth?.startsWith('Bearer ') === true) presented = auth.slice(7).trim()
    else presented = new URL(req.url ?? '/', 'http://local').searchParams.get('token') ?? undefined
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

  private async handle (req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const url = new URL(req.url ?? '/', 'http://local')
      if (!url.pathname.startsWith('/api/') && !url.pathname.startsWith('/content/')) {
        this.checkHostAndOrigin(req)
        await this.serveStatic(req, res, url)
        return
      }
      this.authorize(req)
      if ((req.method === 'GET' || req.method === 'HEAD') && url.pathname.startsWith('/content/')) {
        await this.serveContent(req, res, url)
        return
      }
      if (req.method === 'POST' && url.pathname === '/api/v0/content/add') {
        send(res, 200, await this.addContent(req, url))
        return
      }
      if (req.method === 'POST' && url.pathname === '/api/v0/content/fetch') {
        await this.fetchContent(req, res)
        return
      }
      const result = await this.route(req, url)
      send(res, 200, result)
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

  /** GET /api/v0/ledger/...: chain status, balances, assets, parcels, transactions, proofs, blocks, evidence. */
  private async ledgerGet (rest: string, url: URL): Promise<unknown> {
    const ledger = this.node.ledger
    const [what, arg] = rest.split('/').map(x => decodeURIComponent(x))
    const who = arg == null || arg === '' ? this.node.did : arg
    switch (what) {
      case 'status': return {
        chain: ledger.chainId,
        height: ledger.state.height,
        lastBlock: ledger.state.lastBlock,
        validators: ledger.state.validators,
        validator: ledger.isValidator,
        mempool: ledger.mempool.size,
        consensusReceived: { ...ledger.consensusReceived }
      }
      case 'balance': {
        const a = ledger.balance(who)
        return { address: who, balance: a.balance.toString(), nonce: a.nonce, stake: a.stake.toString(), height: ledger.state.height }
      }
      case 'assets': return { address: who, assets: ledger.assetsOf(who) }
      case 'parcels': return { address: who, parcels: ledger.parcelsOf(who) }
      case 'parcels-in': {
        if (arg == null || arg === '') throw new ApiError(400, 'BadRequest', 'a space id is required')
        return { space: arg, parcels: ledger.parcelsIn(arg) }
      }
      case 'tx': {
        if (arg == null) throw new ApiError(400, 'BadRequest', 'a transaction id is required')
        return { id: arg, ...await ledger.txStatus(arg) }
      }
      case 'proof': {
        const key = url.searchParams.get('key')
        if (key == null || key === '') throw new ApiError(400, 'BadRequest', 'key is required (account/<did>, asset/<id> or parcel/<id>)')
        return ledger.prove(key)
      }
      case 'block': {
        const stored = await ledger.block(intParam(arg ?? '', 'height'))
        if (stored == null) throw new ApiError(404, 'NotFound', `no block ${arg ?? ''}`)
        return { header: stored.block.header, txs: stored.block.txs.map(t => Buffer.from(t).toString('base64')), commit: stored.commit.map(v => Buffer.from(v).toString('base64')) }
      }
      case 'evidence': return { evidence: await ledger.evidence() }
    }
    throw new ApiError(404, 'NotFound', `no endpoint GET /api/v0/ledger/${rest}`)
  }

  /** POST /api/v0/content/add?name=&pin=: the body is the file's bytes, streamed into the store. */
  private async addContent (req: IncomingMessage, url: URL): Promise<unknown> {
    const name = url.searchParams.get('name') ?? undefined
    const pin = url.searchParams.get('pin') !== 'false'
    const result = await this.node.content.add(req as AsyncIterable<Uint8Array>, { name, pin })
    return { cid: result.cid.toString(), size: result.size, blocks: result.blocks }
  }

  /** POST /api/v0/content/fetch {cid}: fetches a whole file or directory; answers NDJSON progress lines, the last one `done` or `error`. */
  private async fetchContent (req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await this.readJson(req)
    const cid = parseCid(body.cid)
    const controller = new AbortController()
    res.on('close', () => { if (!res.writableFinished) controller.abort(new Error('client went away')) })
    res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' })
    let last = 0
    const line = (value: unknown): void => { res.write(JSON.stringify(value) + '\n') }
    try {
      const stat = await this.node.content.fetch(cid, {
        signal: controller.signal,
        onProgress: p => {
          const now = Date.now()
          if (now - last < FETCH_PROGRESS_INTERVAL_MS) return
          last = now
          line({ progress: p })
        }
      })
      line({ done: true, ...stat })
    } catch (err) {
      const e = err as Error
      line({ error: e.name, message: e.message })
    }
    res.end()
  }

  /**
   * GET|HEAD of the browser client's files from web/dist: no token (they hold no secret), a strict
   * CSP (scripts, styles and connections only to this peer), nosniff, and a year's caching for
   * Vite's content-hashed assets/ (index.html is revalidated, so a rebuild shows at once).
   */
  private async serveStatic (req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    if (req.method !== 'GET' && req.method !== 'HEAD') throw new ApiError(405, 'MethodNotAllowed', `${req.method ?? ''} is not allowed here`)
    const root = this.webRoot
    let rel: string
    try {
      rel = decodeURIComponent(url.pathname)
    } catch {
      throw new ApiError(400, 'InvalidPath', 'path is not valid percent-encoding')
    }
    if (rel === '/' || rel === '') rel = '/index.html'
    const file = root == null ? null : resolve(root, '.' + rel)
    if (root == null || file == null || !file.startsWith(root + sep) || rel.includes('\0')) throw new ApiError(404, 'NotFound', 'no such file')
    let data: Buffer
    try {
      const handle = await open(file, constants.O_RDONLY)
      try {
        const st = await handle.stat()
        if (!st.isFile() || st.size > MAX_STATIC_FILE_BYTES) throw Object.assign(new Error('not a file'), { code: 'ENOENT' })
        data = await handle.readFile()
      } finally {
        await handle.close()
      }
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (code !== 'ENOENT' && code !== 'EISDIR' && code !== 'ENOTDIR') throw err
      if (rel === '/index.html') {
        const text = 'client not built: run npm run build:web\n'
        res.writeHead(503, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' })
        res.end(req.method === 'HEAD' ? undefined : text)
        return
      }
      throw new ApiError(404, 'NotFound', 'no such file')
    }
    const hashed = rel.startsWith('/assets/')
    const host = req.headers.host ?? ''
    res.writeHead(200, {
      'content-type': STATIC_TYPES[extname(file).toLowerCase()] ?? 'application/octet-stream',
      'content-length': data.length,
      'cache-control': hashed ? 'public, max-age=31536000, immutable' : 'no-cache',
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
      'x-frame-options': 'DENY',
      'cross-origin-opener-policy': 'same-origin',
      'cross-origin-resource-policy': 'same-origin',
      // data: and blob: in connect-src let GLTFLoader read embedded buffers (they never leave the page).
      'content-security-policy': [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        `connect-src 'self' ws://${host} data: blob:`,
        "img-src 'self' blob: data:",
        "media-src 'self' blob: data:",
        "worker-src 'self' blob:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'"
      ].join('; ')
    })
    res.end(req.method === 'HEAD' ? undefined : data)
  }

  /** GET|HEAD /content/CID[/path]: the file's bytes, with Range, ETag and a Content-Type. */
  private async serveContent (req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const parts = url.pathname.slice('/content/'.length).split('/')
    const root = parseCid(parts[0])
    let path: string
    try {
      path = parts.slice(1).map(p => decodeURIComponent(p)).join('/')
    } catch {
      throw new ApiError(400, 'InvalidPath', 'path is not valid percent-encoding')
    }
    const controller = new AbortController()
    res.on('close', () => { if (!res.writableFinished) controller.abort(new Error('client went away')) })
    const timer = setTimeout(() => { controller.abort(new DOMException('no first byte in time', 'TimeoutError')) }, CONTENT_FIRST_BYTE_TIMEOUT_MS)
    const signal = controller.signal
    const content = this.node.content
    let cid: CID = root
    let name: string | undefined
    if (path !== '') {
      const resolved = await content.resolve(root, path, { signal })
      cid = resolved.cid
      name = resolved.name
    }
    const etag = `"${cid.toString()}"`
    const stat = await content.stat(cid, { signal, hints: cid.equals(root) ? [] : [root] })
    const common = {
      etag,
      'cache-control': 'public, max-age=31536000, immutable',
      'x-content-type-options': 'nosniff',
      'content-security-policy': "default-src 'none'; sandbox",
      'access-control-expose-headers': 'content-range, content-length, etag'
    }
    if (stat.kind === 'directory') {
      clearTimeout(timer)
      const entries = await content.ls(cid, { signal })
      const json = JSON.stringify({ cid: cid.toString(), entries: entries.map(e => ({ name: e.name, cid: e.cid.toString(), size: e.size })) })
      res.writeHead(200, { ...common, 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(json) })
      res.end(req.method === 'HEAD' ? undefined : json)
      return
    }
    if (req.headers['if-none-match'] === etag) {
      clearTimeout(timer)
      res.writeHead(304, common)
      res.end()
      return
    }
    const size = stat.size
    let range: { start: number, end: number } | null
    try {
      range = parseRange(req.headers.range, size)
    } catch (err) {
      if (!(err instanceof RangeNotSatisfiableError)) throw err
      clearTimeout(timer)
      res.writeHead(416, { ...common, 'content-range': unsatisfiedRangeHeader(size), 'content-length': 0 })
      res.end()
      return
    }
    let head = new Uint8Array(0)
    if (name == null || contentType(name, head) === 'application/octet-stream') {
      const pieces: Uint8Array[] = []
      for await (const chunk of content.cat(cid, { length: SNIFF_BYTES, signal, hints: [root] })) pieces.push(chunk)
      head = Buffer.concat(pieces)
    }
    const type = contentType(name, head)
    const start = range?.start ?? 0
    const length = range == null ? size : range.end - range.start + 1
    const headers: Record<string, string | number> = { ...common, 'content-type': type, 'accept-ranges': 'bytes', 'content-length': length }
    if (range != null) headers['content-range'] = contentRangeHeader(range.start, range.end, size)
    if (req.method === 'HEAD' || length === 0) {
      clearTimeout(timer)
      res.writeHead(range == null ? 200 : 206, headers)
      res.end()
      return
    }
    let first = true
    for await (const chunk of content.cat(cid, { offset: start, length, signal, hints: [root] })) {
      if (first) {
        clearTimeout(timer)
        res.writeHead(range == null ? 200 : 206, headers)
        first = false
      }
      if (!res.write(chunk)) {
        await new Promise<void>(resolve => {
          const done = (): void => { res.off('drain', done); res.off('close', done); resolve() }
          res.on('drain', done)
          res.on('close', done)
        })
      }
      if (res.destroyed) return
    }
    res.end()
  }

  private async route (req: IncomingMessage, url: URL): Promise<unknown> {
    const method = req.method ?? 'GET'
    const path = url.pathname
    const node = this.node
    const signal = AbortSignal.timeout(API_OPERATION_TIMEOUT_MS)
    const str = (body: Record<string, unknown>, key: string): string => {
      const v = body[key]
      if (typeof v !== 'string' || v === '') throw new ApiError(400, 'BadRequest', `${key} must be a non-empty string`)
      return v
    }
    if (method === 'GET' && path === '/api/v0/status') return node.status()
    if (method === 'GET' && path === '/api/v0/peers') return { peers: node.peers() }
    if (method === 'GET' && path.startsWith('/api/v0/dht/peer/')) return node.findPeer(decodeURIComponent(path.slice('/api/v0/dht/peer/'.length)), { signal })
    if (method === 'GET' && path === '/api/v0/gossip/topics') return { topics: node.topics() }
    if (method === 'GET' && path.startsWith('/api/v0/ledger/')) return await this.ledgerGet(path.slice('/api/v0/ledger/'.length), url)
    if (method === 'GET' && path === '/api/v0/social/feed') {
      const limit = url.searchParams.get('limit')
      return { entries: await node.social.timeline({ limit: limit == null ? undefined : intParam(limit, 'limit'), before: url.searchParams.get('before') ?? undefined }) }
    }
    if (method === 'GET' && path === '/api/v0/social/following') return { following: node.social.following() }
    if (method === 'GET' && path === '/api/v0/social/lists') return node.social.lists()
    if (method === 'GET' && path.startsWith('/api/v0/social/profile/')) return await node.social.profile(decodeURIComponent(path.slice('/api/v0/social/profile/'.length)))
    if (method === 'GET' && path.startsWith('/api/v0/social/entries/')) {
      const did = decodeURIComponent(path.slice('/api/v0/social/entries/'.length))
      const from = url.searchParams.get('from')
      const limit = url.searchParams.get('limit')
      const entries = await node.social.entries(did, { from: from == null ? undefined : intParam(from, 'from'), limit: limit == null ? undefined : intParam(limit, 'limit') })
      return { entries: entries.map(entryJson) }
    }
    if (method === 'GET' && path === '/api/v0/content/pins') return { pins: await node.content.pins() }
    if (method === 'GET' && path === '/api/v0/content/store') {
      const { usedBytes, maxBytes, blocks } = node.content.status()
      return { usedBytes, maxBytes, blocks }
    }
    if (method === 'GET' && path.startsWith('/api/v0/dht/providers/')) return { providers: await node.content.providers(decodeURIComponent(path.slice('/api/v0/dht/providers/'.length))) }
    if (method === 'GET' && path.startsWith('/api/v0/content/stat/')) return await node.content.stat(decodeURIComponent(path.slice('/api/v0/content/stat/'.length)), { signal })
    if (method === 'GET' && path.startsWith('/api/v0/content/ls/')) {
      const entries = await node.content.ls(decodeURIComponent(path.slice('/api/v0/content/ls/'.length)), { signal })
      return { entries: entries.map(e => ({ name: e.name, cid: e.cid.toString(), size: e.size })) }
    }
    if (method === 'GET' && path === '/api/v0/space') return { spaces: node.space.spaces() }
    if (method === 'GET' && path.startsWith('/api/v0/space/')) {
      const [id, what] = path.slice('/api/v0/space/'.length).split('/').map(decodeURIComponent)
      switch (what ?? '') {
        case '': return node.space.view(id)
        case 'who': return { members: node.space.who(id) }
        case 'chat': return { chat: node.space.chat(id, { limit: url.searchParams.has('limit') ? intParam(url.searchParams.get('limit') ?? '', 'limit') : undefined }) }
        case 'objects': return { objects: node.space.objects(id) }
      }
      throw new ApiError(404, 'NotFound', `no endpoint GET ${path}`)
    }
    if (method === 'GET' && path === '/api/v0/gossip/peers') return { peers: node.topicPeers(url.searchParams.get('topic') ?? '') }
    if (method === 'POST') {
      const body = await this.readJson(req)
      switch (path) {
        case '/api/v0/connect': return { peerId: await node.connect(str(body, 'address'), { signal }) }
        case '/api/v0/ping': return { rttMs: await node.ping(str(body, 'target'), { signal }) }
        case '/api/v0/net/deny': {
          const peers = body.peers
          if (!Array.isArray(peers) || peers.length > MAX_API_DENY_PEERS || !peers.every(p => typeof p === 'string')) throw new ApiError(400, 'BadRequest', `peers must be an array of at most ${MAX_API_DENY_PEERS} peer ids`)
          return { peers: await node.denyPeers(peers) }
        }
        case '/api/v0/gossip/subscribe': node.subscribe(str(body, 'topic')); return { topics: node.topics() }
        case '/api/v0/gossip/unsubscribe': node.unsubscribe(str(body, 'topic')); return { topics: node.topics() }
        case '/api/v0/content/pin': {
          const info = await node.content.pin(str(body, 'cid'), { name: typeof body.name === 'string' ? body.name : undefined })
          return info
        }
        case '/api/v0/content/unpin': return { unpinned: await node.content.unpin(str(body, 'cid')) }
        case '/api/v0/content/gc': return await node.content.gc()
        case '/api/v0/content/directory': {
          const entries = body.entries
          if (!Array.isArray(entries) || entries.length > MAX_API_DIRECTORY_ENTRIES) throw new ApiError(400, 'BadRequest', `entries must be an array of at most ${MAX_API_DIRECTORY_ENTRIES} {name, cid}`)
          const children = entries.map((e: unknown) => {
            const entry = e as { name?: unknown, cid?: unknown }
            if (typeof entry?.name !== 'string') throw new ApiError(400, 'BadRequest', 'each entry needs a name')
            return { name: entry.name, cid: parseCid(entry.cid) }
          })
          const dir = await node.content.addDirectory(children, { name: typeof body.name === 'string' ? body.name : undefined, pin: body.pin !== false })
          return { cid: dir.cid.toString(), size: dir.size }
        }
        case '/api/v0/ledger/pay': return txJson(await node.ledger.submitOwn({ kind: 'transfer', to: str(body, 'to'), amount: amountParam(body.amount, 'amount') }, feeParam(body.fee)))
        case '/api/v0/ledger/asset/mint': return txJson(await node.ledger.submitOwn({ kind: 'mint', content: parseCid(body.content), name: str(body, 'name') }, feeParam(body.fee)))
        case '/api/v0/ledger/asset/transfer': return txJson(await node.ledger.submitOwn({ kind: 'asset-transfer', asset: str(body, 'asset'), to: str(body, 'to') }, feeParam(body.fee)))
        case '/api/v0/ledger/parcel/claim': return txJson(await node.ledger.submitOwn({ kind: 'claim', space: str(body, 'space'), x: Number(body.x), y: Number(body.y), w: Number(body.w), h: Number(body.h) }, feeParam(body.fee)))
        case '/api/v0/ledger/parcel/transfer': return txJson(await node.ledger.submitOwn({ kind: 'parcel-transfer', parcel: str(body, 'parcel'), to: str(body, 'to') }, feeParam(body.fee)))
        case '/api/v0/ledger/stake': return txJson(await node.ledger.submitOwn({ kind: 'stake', amount: amountParam(body.amount, 'amount') }, feeParam(body.fee)))
        case '/api/v0/ledger/unstake': return txJson(await node.ledger.submitOwn({ kind: 'unstake', amount: amountParam(body.amount, 'amount') }, feeParam(body.fee)))
        case '/api/v0/ledger/faucet': return txJson(await node.ledger.faucet(typeof body.to === 'string' ? body.to : node.did))
        case '/api/v0/ledger/submit': return txJson(await node.ledger.submit(new Uint8Array(Buffer.from(str(body, 'tx'), 'base64'))))
        case '/api/v0/ledger/submit-batch': {
          // For wallets and gateways that relay many users' transactions: one request, a result each.
          const txs = body.txs
          if (!Array.isArray(txs) || txs.length === 0 || txs.length > MAX_API_SUBMIT_BATCH_TXS || !txs.every(t => typeof t === 'string')) {
            throw new ApiError(400, 'BadRequest', `txs must be an array of 1..${MAX_API_SUBMIT_BATCH_TXS} base64 transactions`)
          }
          const results: Array<Record<string, unknown>> = []
          let slice = performance.now()
          for (const t of txs as string[]) {
            // Each transaction is a signature check: give the event loop back now and then, so a
            // large batch does not hold up the peer's consensus messages.
            if (performance.now() - slice >= SUBMIT_BATCH_SLICE_MS) {
              await new Promise(resolve => setImmediate(resolve))
              slice = performance.now()
            }
            try {
              results.push(txJson(await node.ledger.submit(new Uint8Array(Buffer.from(t, 'base64')))))
            } catch (err) {
              results.push({ error: (err as Error).name, message: (err as Error).message })
            }
          }
          return { results }
        }
        case '/api/v0/social/post': {
          const attachments = cidList(body.attachments)
          return entryJson(await node.social.post(str(body, 'text'), attachments))
        }
        case '/api/v0/social/reply': return entryJson(await node.social.reply(parseCid(body.to), str(body, 'text'), cidList(body.attachments)))
        case '/api/v0/social/like': return entryJson(await node.social.like(parseCid(body.of)))
        case '/api/v0/social/delete': return entryJson(await node.social.remove(parseCid(body.of)))
        case '/api/v0/social/follow': return entryJson(await node.social.follow(str(body, 'did')))
        case '/api/v0/social/unfollow': return entryJson(await node.social.unfollow(str(body, 'did')))
        case '/api/v0/social/profile': {
          const profile: { name?: string, bio?: string, avatar?: CID } = {}
          if (body.name !== undefined) profile.name = str(body, 'name')
          if (body.bio !== undefined) profile.bio = String(body.bio)
          if (body.avatar !== undefined) profile.avatar = parseCid(body.avatar)
          return entryJson(await node.social.setProfile(profile))
        }
        case '/api/v0/social/mute': await node.social.setMuted(str(body, 'did'), true); return node.social.lists()
        case '/api/v0/social/unmute': await node.social.setMuted(str(body, 'did'), false); return node.social.lists()
        case '/api/v0/social/block': await node.social.setBlocked(str(body, 'did'), true); return node.social.lists()
        case '/api/v0/social/unblock': await node.social.setBlocked(str(body, 'did'), false); return node.social.lists()
        case '/api/v0/space/create': return await node.space.create({
          name: str(body, 'name'),
          private: body.private === true,
          grid: { width: optInt(body.width, 'width'), depth: optInt(body.depth, 'depth'), cell: optInt(body.cell, 'cell') },
          displayName: typeof body.displayName === 'string' ? body.displayName : undefined,
          avatar: typeof body.avatar === 'string' ? body.avatar : undefined
        })
        case '/api/v0/space/join': return await node.space.join(str(body, 'space'), { name: optStr(body.name, 'name'), avatar: optStr(body.avatar, 'avatar'), signal })
        case '/api/v0/space/leave': await node.space.leave(str(body, 'space')); return { spaces: node.space.spaces() }
        case '/api/v0/space/look': node.space.setLook(str(body, 'space'), { name: optStr(body.name, 'name'), avatar: optStr(body.avatar, 'avatar') }); return { ok: true }
        case '/api/v0/space/move':
          node.space.move(str(body, 'space'), vec(body.position, 3, 'position') as [number, number, number], body.rotation == null ? undefined : vec(body.rotation, 4, 'rotation') as [number, number, number, number])
          return { ok: true }
        case '/api/v0/space/say': return await node.space.say(str(body, 'space'), str(body, 'text'))
        case '/api/v0/space/object/place': {
          const space = str(body, 'space')
          const id = await node.space.place(space, {
            model: parseCid(body.model).toString(),
            position: vec(body.position, 3, 'position') as [number, number, number],
            rotation: (body.rotation == null ? [0, 0, 0, 1] : vec(body.rotation, 4, 'rotation')) as [number, number, number, number],
            scale: (body.scale == null ? [1, 1, 1] : vec(body.scale, 3, 'scale')) as [number, number, number],
            props: (body.props ?? {}) as Record<string, string | number | boolean>
          }, optStr(body.id, 'id'))
          return { id }
        }
        case '/api/v0/space/object/move': {
          const t: { position?: [number, number, number], rotation?: [number, number, number, number], scale?: [number, number, number] } = {}
          if (body.position != null) t.position = vec(body.position, 3, 'position') as [number, number, number]
          if (body.rotation != null) t.rotation = vec(body.rotation, 4, 'rotation') as [number, number, number, number]
          if (body.scale != null) t.scale = vec(body.scale, 3, 'scale') as [number, number, number]
          await node.space.moveObject(str(body, 'space'), str(body, 'id'), t)
          return { ok: true }
        }
        case '/api/v0/space/object/remove': await node.space.removeObject(str(body, 'space'), str(body, 'id')); return { ok: true }
        case '/api/v0/space/policy': {
          const lists = ['addEditors', 'removeEditors', 'ban', 'unban', 'mute', 'unmute', 'kick', 'addMembers', 'removeMembers'] as const
          const change: Record<string, unknown> = {}
          for (const k of lists) {
            const v = body[k]
            if (v === undefined) continue
            if (!Array.isArray(v) || v.length > 1024 || !v.every(x => typeof x === 'string')) throw new ApiError(400, 'BadRequest', `${k} must be a list of did:key strings`)
            change[k] = v
          }
          if (body.kickMs !== undefined) change.kickMs = optInt(body.kickMs, 'kickMs')
          const { space: _s, ...policy } = await node.space.setPolicy(str(body, 'space'), change)
          return policy
        }
        case '/api/v0/gossip/publish': {
          const data = typeof body.data === 'string'
            ? new TextEncoder().encode(body.data)
            : typeof body.dataBase64 === 'string' ? new Uint8Array(Buffer.from(body.dataBase64, 'base64')) : undefined
          if (data == null) throw new ApiError(400, 'BadRequest', 'data (text) or dataBase64 is required')
          return { recipients: await node.publish(str(body, 'topic'), data) }
        }
      }
    }
    throw new ApiError(404, 'NotFound', `no endpoint ${method} ${path}`)
  }
}

function optInt (value: unknown, name: string): number | undefined {
  if (value === undefined || value === null) return undefined
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) throw new ApiError(400, 'BadRequest', `${name} must be a non-negative integer`)
  return value
}

function optStr (value: unknown, name: string): string | undefined {
  if (value === undefined || value === null) return undefined
  if (typeof value !== 'string') throw new ApiError(400, 'BadRequest', `${name} must be a string`)
  return value
}

/** A vector of `n` finite numbers from JSON. */
function vec (value: unknown, n: number, name: string): number[] {
  if (!Array.isArray(value) || value.length !== n || !value.every(x => typeof x === 'number' && Number.isFinite(x))) {
    throw new ApiError(400, 'BadRequest', `${name} must be ${n} finite numbers`)
  }
  return value as number[]
}

function intParam (value: string, name: string): number {
  const n = Number(value)
  if (!Number.isSafeInteger(n) || n < 0) throw new ApiError(400, 'BadRequest', `${name} must be a non-negative integer`)
  return n
}

/** An amount from JSON: a decimal string or a safe integer, never a fraction. */
function amountParam (value: unknown, name: string): bigint {
  if (typeof value === 'string' && /^\d{1,19}$/.test(value)) return BigInt(value)
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return BigInt(value)
  throw new ApiError(400, 'BadRequest', `${name} must be a whole number of units (a decimal string or an integer)`)
}

function feeParam (value: unknown): bigint | undefined {
  return value === undefined ? undefined : amountParam(value, 'fee')
}

function txJson (tx: Tx): Record<string, unknown> {
  return { id: tx.id, sender: tx.sender, nonce: tx.payload.nonce, kind: tx.payload.kind, status: 'pending' }
}

function cidList (value: unknown): CID[] | undefined {
  if (value === undefined) return undefined
  if (!Array.isArray(value)) throw new ApiError(400, 'BadRequest', 'attachments must be a list of CIDs')
  return value.map(v => parseCid(v))
}

/** An entry's payload with CIDs as strings. */
function jsonPayload (payload: EntryPayload): Record<string, unknown> {
  // A CID serialises as {"/": "bafy…"} (its toJSON); the API gives it as the plain string.
  return JSON.parse(JSON.stringify(payload, (_k, v) => {
    if (CID.asCID(v) != null) return String(v)
    if (v != null && typeof v === 'object' && Object.keys(v).length === 1 && typeof v['/'] === 'string') return v['/']
    return v
  }))
}

/** An entry as the API gives it: id, author, seq, prev, ts, kind and the body's fields. */
function entryJson (e: Entry): Record<string, unknown> {
  const { body, ...rest } = jsonPayload(e.payload)
  return { id: e.id.toString(), author: e.author, ...rest, ...(body as Record<string, unknown>) }
}

/** HTTP status for an error thrown by the node. */
function errorStatus (e: Error): number {
  switch (e.name) {
    case 'NotFoundError': case 'PathNotFoundError': case 'BlockNotFoundError': case 'NoProvidersError': case 'SpaceNotFoundError': case 'NotJoinedError': case 'UnknownObjectError': return 404
    case 'NotSpaceOwnerError': case 'EditNotAllowedError': case 'ExcludedError': case 'NotAMemberError': return 403
    case 'SpaceRateLimitError': return 429
    case 'AbortError': case 'TimeoutError': return 504
    case 'StoreFullError': return 507
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
