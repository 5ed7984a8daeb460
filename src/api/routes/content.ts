/**
 * Node-only: the API's routes for content: adding a file (streamed body) or a directory, fetching
 * with NDJSON progress, pins, the store's use, providers, stat and listings, garbage collection,
 * and GET|HEAD /content/CID[/path] for the browser: the bytes with Range, ETag and a Content-Type,
 * streaming from peers as needed. `?max=BYTES` caps what a read may cost: a file over it is refused
 * from its root's stat (413 ContentTooLargeError) before any of its data is fetched, so a page can
 * show a stranger's thumbnail without the stranger choosing how much this peer downloads.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { CID } from 'multiformats/cid'
import { contentRangeHeader, contentType, parseCid, parseRange, RangeNotSatisfiableError, SNIFF_BYTES, unsatisfiedRangeHeader } from '../../content/index.ts'
import { parseLinkOf } from '../../net/links.ts'
import type { PeerverseNode } from '../../node/node.ts'
import { ApiError } from '../errors.ts'
import { str, type Route } from '../routes.ts'
import { linkAnswer } from './space.ts'

/** Time a content read may wait for the swarm before its first byte. */
export const CONTENT_FIRST_BYTE_TIMEOUT_MS = 60_000
/** Entries in one directory-building request. */
export const MAX_API_DIRECTORY_ENTRIES = 1024
/** Interval between progress lines of a fetch. */
export const FETCH_PROGRESS_INTERVAL_MS = 250
/** Digits in a /content read's `?max=` (any byte count a file can have fits). */
export const MAX_CONTENT_MAX_DIGITS = 15

/** A /content read whose file is larger than the read's `?max=`: 413, nothing past the root fetched. */
export class ContentTooLargeError extends ApiError {
  override name = 'ContentTooLargeError'
  readonly size: number
  readonly max: number
  constructor (size: number, max: number) {
    super(413, 'ContentTooLargeError', `the file is ${size} bytes, more than max=${max}`)
    this.size = size
    this.max = max
  }
}

/** A /content read's `?max=` that is not a byte count: 400. */
export class InvalidMaxError extends ApiError {
  override name = 'InvalidMaxError'
  constructor (message: string) {
    super(400, 'InvalidMaxError', message)
  }
}

/** The `?max=` of a /content read: undefined when absent, else a whole number of bytes. */
export function parseMax (value: string | null): number | undefined {
  if (value == null) return undefined
  if (value.length > MAX_CONTENT_MAX_DIGITS || !/^[0-9]+$/.test(value)) {
    throw new InvalidMaxError(`max must be a byte count of at most ${MAX_CONTENT_MAX_DIGITS} digits`)
  }
  return Number(value)
}

  /**
   * POST /api/v0/content/add?name=&pin=&import=: the body is the file's bytes, streamed into the
   * store. A full disk answers 507 DiskFullError, with the blocks of the failed add removed. With
   * `import` the file is part of a directory import (see /content/import/end).
   */
async function addContent (node: PeerverseNode, req: IncomingMessage, url: URL): Promise<unknown> {
    const name = url.searchParams.get('name') ?? undefined
    const pin = url.searchParams.get('pin') !== 'false'
    const importId = url.searchParams.get('import') ?? undefined
    const controller = new AbortController()
    req.on('close', () => { if (!req.complete) controller.abort(new Error('client went away')) })
    const result = await node.content.add(req as AsyncIterable<Uint8Array>, { name, pin, importId, signal: controller.signal })
    return { cid: result.cid.toString(), size: result.size, blocks: result.blocks }
  }

/** HTTP status of a refused CAR import, by the error's name. */
const CAR_IMPORT_STATUS: Record<string, number> = { MalformedCarError: 400, CarBlockMismatchError: 400, CarIncompleteError: 400, CarTooLargeError: 413 }

/**
 * POST /api/v0/content/import-car?name=: the body is a CARv1, read block by block (each checked
 * against its CID before it is stored); answers its roots, pinned. A refused CAR (MalformedCarError,
 * CarBlockMismatchError, CarIncompleteError, CarTooLargeError) leaves none of its blocks; the rest of
 * its body is read and dropped first, so the client hears the reason rather than a reset.
 */
async function importCarContent (node: PeerverseNode, req: IncomingMessage, url: URL): Promise<unknown> {
  const name = url.searchParams.get('name') ?? undefined
  const controller = new AbortController()
  req.on('close', () => { if (!req.complete) controller.abort(new Error('client went away')) })
  try {
    // Not destroyed when the reader stops early: a refusal drains the rest and answers.
    const body = req.iterator({ destroyOnReturn: false }) as AsyncIterable<Uint8Array>
    const result = await node.content.importCar(body, { name, signal: controller.signal })
    return { roots: result.roots.map(r => r.toString()), blocks: result.blocks, bytes: result.bytes }
  } catch (err) {
    const e = err as Error
    if (!req.complete && !controller.signal.aborted) { req.resume(); await new Promise(resolve => { req.once('end', resolve); req.once('close', resolve) }) }
    const status = CAR_IMPORT_STATUS[e.name]
    if (status != null) throw new ApiError(status, e.name, e.message)
    throw err
  }
}

/** Longest wait for a direct path a fetch may ask for (`directPathTimeoutMs`). */
export const MAX_DIRECT_PATH_TIMEOUT_MS = 10 * 60_000

/** A fetch's `directPathTimeoutMs`: a whole number of milliseconds from 1 to MAX_DIRECT_PATH_TIMEOUT_MS, or absent. */
export function directPathTimeout (body: Record<string, unknown>): number | undefined {
  const v = body.directPathTimeoutMs
  if (v === undefined) return undefined
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1 || v > MAX_DIRECT_PATH_TIMEOUT_MS) {
    throw new ApiError(400, 'BadRequest', `directPathTimeoutMs must be a whole number of milliseconds from 1 to ${MAX_DIRECT_PATH_TIMEOUT_MS}`)
  }
  return v
}

/** The CID and a link's peers of a fetch: {cid}, or {link} (a content link in any form; with both, one CID). */
export function fetchTarget (body: Record<string, unknown>): { cid: CID, peers: string[] } {
  if (body.link === undefined) return { cid: parseCid(body.cid), peers: [] }
  if (typeof body.link !== 'string') throw new ApiError(400, 'BadRequest', 'link must be a string')
  const link = parseLinkOf(body.link, 'content')
  const cid = parseCid(link.target)
  if (body.cid !== undefined && !parseCid(body.cid).equals(cid)) throw new ApiError(400, 'BadRequest', 'cid and link name different content')
  return { cid, peers: link.peers }
}

  /**
   * POST /api/v0/content/fetch {cid} or {link}: fetches a whole file or directory (from a link's
   * peers too); answers NDJSON progress lines, the last one `done` or `error`. A bad link is a 400.
   */
async function fetchContent (node: PeerverseNode, body: Record<string, unknown>, res: ServerResponse): Promise<void> {
    const { cid, peers } = fetchTarget(body)
    const directPathTimeoutMs = directPathTimeout(body)
    const controller = new AbortController()
    res.on('close', () => { if (!res.writableFinished) controller.abort(new Error('client went away')) })
    res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' })
    let last = 0
    let waiting = 0
    const line = (value: unknown): void => { res.write(JSON.stringify(value) + '\n') }
    try {
      const stat = await node.content.fetch(cid, {
        peers,
        directPathTimeoutMs,
        signal: controller.signal,
        onProgress: p => {
          const now = Date.now()
          // A change in the wait for a direct path is told at once.
          if (now - last < FETCH_PROGRESS_INTERVAL_MS && p.waitingForDirectPath === waiting) return
          waiting = p.waitingForDirectPath
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
   * GET|HEAD /content/CID[/path][?max=BYTES]: the file's bytes, with Range, ETag and a Content-Type.
   * A file over `max` is refused once its size is known from the root (ContentTooLargeError).
   */
export async function serveContent (node: PeerverseNode, req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const max = parseMax(url.searchParams.get('max'))
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
    const content = node.content
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
    if (max != null && size > max) {
      clearTimeout(timer)
      throw new ContentTooLargeError(size, max)
    }
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


export const contentRoutes: Route[] = [
  { method: 'POST', path: '/api/v0/content/add', handle: async ({ node, req, url }) => await addContent(node, req, url) },
  { method: 'POST', path: '/api/v0/content/import-car', handle: async ({ node, req, url }) => await importCarContent(node, req, url) },
  { method: 'POST', path: '/api/v0/content/fetch', raw: true, handle: async ({ node, body, res }) => { await fetchContent(node, await body(), res) } },
  { method: 'GET', path: '/api/v0/content/pins', handle: async ({ node }) => ({ pins: await node.content.pins() }) },
  // GET /api/v0/content/link?cid=CID -> { code, link }: the content's link, naming this peer's addresses.
  { method: 'GET', path: '/api/v0/content/link', handle: ({ node, url, req }) => linkAnswer(req, node.content.link(url.searchParams.get('cid') ?? '')) },
  {
    method: 'GET',
    path: '/api/v0/content/store',
    handle: ({ node }) => {
      const { usedBytes, maxBytes, blocks, abandonedDownloads } = node.content.status()
      return { usedBytes, maxBytes, blocks, abandonedDownloads }
    }
  },
  { method: 'GET', path: '/api/v0/dht/providers/*', handle: async ({ node, rest }) => ({ providers: await node.content.providers(decodeURIComponent(rest)) }) },
  { method: 'GET', path: '/api/v0/content/stat/*', handle: async ({ node, rest, signal }) => await node.content.stat(decodeURIComponent(rest), { signal }) },
  {
    method: 'GET',
    path: '/api/v0/content/ls/*',
    handle: async ({ node, rest, signal }) => {
      const entries = await node.content.ls(decodeURIComponent(rest), { signal })
      return { entries: entries.map(e => ({ name: e.name, cid: e.cid.toString(), size: e.size })) }
    }
  },
  { method: 'POST', path: '/api/v0/content/pin', handle: async ({ node, body }) => { const b = await body(); return await node.content.pin(str(b, 'cid'), { name: typeof b.name === 'string' ? b.name : undefined }) } },
  { method: 'POST', path: '/api/v0/content/unpin', handle: async ({ node, body }) => ({ unpinned: await node.content.unpin(str(await body(), 'cid')) }) },
  { method: 'POST', path: '/api/v0/content/gc', handle: async ({ node }) => await node.content.gc() },
  {
    method: 'POST',
    path: '/api/v0/content/directory',
    handle: async ({ node, body }) => {
      const b = await body()
      const entries = b.entries
      if (!Array.isArray(entries) || entries.length > MAX_API_DIRECTORY_ENTRIES) throw new ApiError(400, 'BadRequest', `entries must be an array of at most ${MAX_API_DIRECTORY_ENTRIES} {name, cid}`)
      const children = entries.map((e: unknown) => {
        const entry = e as { name?: unknown, cid?: unknown }
        if (typeof entry?.name !== 'string') throw new ApiError(400, 'BadRequest', 'each entry needs a name')
        return { name: entry.name, cid: parseCid(entry.cid) }
      })
      const importId = typeof b.import === 'string' ? b.import : undefined
      const dir = await node.content.addDirectory(children, { name: typeof b.name === 'string' ? b.name : undefined, pin: b.pin !== false, importId })
      return { cid: dir.cid.toString(), size: dir.size }
    }
  },
  {
    // POST /api/v0/content/import/end {import, discard}: ends a directory import; discard removes the blocks it wrote that nothing else references.
    method: 'POST',
    path: '/api/v0/content/import/end',
    handle: async ({ node, body }) => { const b = await body(); return await node.content.endImport(str(b, 'import'), { discard: b.discard === true }) }
  }
]
