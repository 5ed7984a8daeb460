/**
 * Node-only: the IPFS trustless gateway (specs.ipfs.tech/http-gateways/trustless-gateway), so any
 * verifying client can take this peer's content over plain HTTP and check every block:
 * `GET|HEAD /ipfs/CID` as one raw block (`Accept: application/vnd.ipld.raw` or `?format=raw`), and
 * `GET|HEAD /ipfs/CID[/path]` as a CARv1 (`application/vnd.ipld.car` or `?format=car`):
 * `version=1; order=dfs`, `dups=n` unless asked for `y`, `dag-scope=all|entity|block` and
 * `entity-bytes=from:to`. Blocks stream out as they are read from the store or fetched from the
 * swarm (the same first-byte limit as GET /content), never the DAG at once. It never deserializes:
 * a request that names no verifiable type gets 400, one whose types we do not serve 406, each with
 * a named reason. Whether it needs the API token is the `gateway.open` setting (server.ts).
 */
import { createHash } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { CID } from 'multiformats/cid'
import { parseCid } from '../../content/index.ts'
import { carContentType, encodeCarBlock, encodeCarHeader } from '../../content/car.ts'
import { fileSizeOfRoot, IDENTITY_CODE, type DagScope, type EntityBytes } from '../../content/car-dag.ts'
import { MAX_PATH_DEPTH, PathNotFoundError } from '../../content/directory.ts'
import type { PeerverseNode } from '../../node/node.ts'
import { ApiError } from '../errors.ts'
import { CONTENT_FIRST_BYTE_TIMEOUT_MS } from './content.ts'

/** Where the gateway answers. */
export const GATEWAY_PREFIX = '/ipfs/'
export const RAW_MEDIA_TYPE = 'application/vnd.ipld.raw'
export const CAR_MEDIA_TYPE = 'application/vnd.ipld.car'
/** Content under a CID never changes. */
export const GATEWAY_CACHE_CONTROL = 'public, max-age=29030400, immutable'
/** Media ranges of one Accept header we weigh at most (the rest are ignored). */
export const MAX_ACCEPT_ENTRIES = 32
/** Digits of one `entity-bytes` offset. */
export const MAX_ENTITY_BYTES_DIGITS = 16

/** No verifiable response type asked for (no `format`, no raw or CAR in Accept): 400. */
export class MissingFormatError extends ApiError {
  override name = 'MissingFormatError'
  constructor (message: string) { super(400, 'MissingFormatError', message) }
}

/** `?format=` other than raw or car: 400. */
export class UnsupportedFormatError extends ApiError {
  override name = 'UnsupportedFormatError'
  constructor (message: string) { super(400, 'UnsupportedFormatError', message) }
}

/** Accept names only types or CAR variants this gateway does not serve: 406. */
export class NotAcceptableError extends ApiError {
  override name = 'NotAcceptableError'
  constructor (message: string) { super(406, 'NotAcceptableError', message) }
}

/** A raw block asked for with a path (only /ipfs/CID serves raw blocks): 400. */
export class RawPathError extends ApiError {
  override name = 'RawPathError'
  constructor (message: string) { super(400, 'RawPathError', message) }
}

/** A bad `dag-scope`, `entity-bytes`, `car-version`, `car-order` or `car-dups`: 400. */
export class InvalidCarParamError extends ApiError {
  override name = 'InvalidCarParamError'
  constructor (message: string) { super(400, 'InvalidCarParamError', message) }
}

/** `entity-bytes` wholly past the end of the file (known from its root block): 400. */
export class EntityBytesOutOfRangeError extends ApiError {
  override name = 'EntityBytesOutOfRangeError'
  constructor (message: string) { super(400, 'EntityBytesOutOfRangeError', message) }
}

/** `Cache-Control: only-if-cached` and the root block is not held here: 412. */
export class NotCachedError extends ApiError {
  override name = 'NotCachedError'
  constructor (message: string) { super(412, 'NotCachedError', message) }
}

/** What a request asks for, after negotiation. */
export interface GatewayRequest {
  format: 'raw' | 'car'
  root: CID
  path: string[]
  scope: DagScope
  entityBytes?: EntityBytes
  dups: boolean
}

interface MediaRange { type: string, params: Map<string, string>, q: number }

/** The media ranges of an Accept header, by preference (q, then order), at most MAX_ACCEPT_ENTRIES. */
export function parseAccept (header: string | undefined): MediaRange[] {
  if (header == null || header.trim() === '') return []
  const out: MediaRange[] = []
  for (const part of header.split(',').slice(0, MAX_ACCEPT_ENTRIES)) {
    const [type, ...rest] = part.split(';').map(s => s.trim())
    if (type === '') continue
    const params = new Map<string, string>()
    for (const p of rest) {
      const eq = p.indexOf('=')
      if (eq > 0) params.set(p.slice(0, eq).trim().toLowerCase(), p.slice(eq + 1).trim().replace(/^"|"$/g, '').toLowerCase())
    }
    const q = params.has('q') ? Number(params.get('q')) : 1
    params.delete('q')
    out.push({ type: type.toLowerCase(), params, q: Number.isFinite(q) ? q : 0 })
  }
  return out.map((m, i) => ({ m, i })).sort((a, b) => b.m.q - a.m.q || a.i - b.i).map(x => x.m).filter(m => m.q > 0)
}

/** Why a CAR variant is not served, or undefined when it is (version 1, order dfs or unk, dups y or n). */
function carVariantProblem (version: string | undefined, order: string | undefined, dups: string | undefined): string | undefined {
  if (version != null && version !== '1') return `CAR version ${version} (this gateway sends version 1)`
  if (order != null && order !== 'dfs' && order !== 'unk') return `CAR order ${order} (this gateway sends dfs)`
  if (dups != null && dups !== 'y' && dups !== 'n') return `CAR dups=${dups} (y or n)`
  return undefined
}

/** Parses `entity-bytes=from:to`; InvalidCarParamError otherwise. */
export function parseEntityBytes (value: string): EntityBytes {
  const digits = `-?[0-9]{1,${MAX_ENTITY_BYTES_DIGITS}}`
  const m = new RegExp(`^(${digits}):(${digits}|\\*)$`).exec(value)
  if (m == null) throw new InvalidCarParamError('entity-bytes must be from:to (byte offsets, negative from the end, to may be *)')
  const from = Number(m[1])
  const to = m[2] === '*' ? '*' : Number(m[2])
  if (to !== '*' && from >= 0 && to >= 0 && to < from) throw new InvalidCarParamError('entity-bytes: to is before from')
  return { from, to }
}

/** The request a URL and its headers make; the named 400/406 errors for anything out of spec. */
export function negotiate (url: URL, headers: IncomingMessage['headers']): GatewayRequest {
  const parts = url.pathname.slice(GATEWAY_PREFIX.length).split('/')
  while (parts.length > 1 && parts[parts.length - 1] === '') parts.pop()
  const root = parseCid(parts[0])
  let path: string[]
  try {
    path = parts.slice(1).map(p => decodeURIComponent(p))
  } catch {
    throw new ApiError(400, 'InvalidPath', 'path is not valid percent-encoding')
  }
  if (path.some(p => p === '' || p === '.' || p === '..' || p.includes('/'))) throw new ApiError(400, 'InvalidPath', 'a path is names separated by single slashes')
  if (path.length > MAX_PATH_DEPTH) throw new ApiError(400, 'InvalidPath', `paths are at most ${MAX_PATH_DEPTH} names deep`)
  const q = url.searchParams
  const accept = parseAccept(headers.accept)
  let format: 'raw' | 'car' | undefined
  let acceptedCar: MediaRange | undefined
  const formatParam = q.get('format')
  if (formatParam != null) {
    if (formatParam !== 'raw' && formatParam !== 'car') throw new UnsupportedFormatError(`format=${formatParam.slice(0, 40)}: this trustless gateway serves format=raw and format=car`)
    format = formatParam
    acceptedCar = accept.find(m => m.type === CAR_MEDIA_TYPE)
  } else {
    const refused: string[] = []
    for (const m of accept) {
      if (m.type === RAW_MEDIA_TYPE) { format = 'raw'; break }
      if (m.type === CAR_MEDIA_TYPE) {
        const problem = carVariantProblem(m.params.get('version'), m.params.get('order'), m.params.get('dups'))
        if (problem == null) { format = 'car'; acceptedCar = m; break }
        refused.push(problem)
      } else if (m.type !== '*/*' && m.type !== 'application/*') {
        refused.push(m.type.slice(0, 60))
      }
    }
    if (format == null) {
      if (refused.length > 0) throw new NotAcceptableError(`not served here: ${refused.slice(0, 4).join(', ')}; this trustless gateway serves ${RAW_MEDIA_TYPE} and ${CAR_MEDIA_TYPE}; version=1; order=dfs; dups=y|n`)
      throw new MissingFormatError(`this is a trustless gateway: send Accept: ${RAW_MEDIA_TYPE} or ${CAR_MEDIA_TYPE} (or ?format=raw|car)`)
    }
  }
  const scopeParam = q.get('dag-scope')
  const bytesParam = q.get('entity-bytes')
  if (format === 'raw') {
    if (path.length > 0) throw new RawPathError('a raw block is served only at /ipfs/CID, with no path')
    if (scopeParam != null || bytesParam != null || q.has('car-version') || q.has('car-order') || q.has('car-dups')) throw new InvalidCarParamError('dag-scope, entity-bytes and car-* go with CAR requests only')
    return { format, root, path, scope: 'block', dups: false }
  }
  const version = q.get('car-version') ?? acceptedCar?.params.get('version')
  const order = q.get('car-order') ?? acceptedCar?.params.get('order')
  const dups = q.get('car-dups') ?? acceptedCar?.params.get('dups')
  const problem = carVariantProblem(version ?? undefined, order ?? undefined, dups ?? undefined)
  if (problem != null) throw new InvalidCarParamError(`not served here: ${problem}`)
  if (scopeParam != null && scopeParam !== 'all' && scopeParam !== 'entity' && scopeParam !== 'block') throw new InvalidCarParamError('dag-scope must be all, entity or block')
  let scope: DagScope = (scopeParam ?? 'all') as DagScope
  let entityBytes: EntityBytes | undefined
  if (bytesParam != null) {
    if (scopeParam != null && scopeParam !== 'entity') throw new InvalidCarParamError('entity-bytes goes with dag-scope=entity (which it implies)')
    entityBytes = parseEntityBytes(bytesParam)
    scope = 'entity'
  }
  return { format, root, path, scope, entityBytes, dups: dups === 'y' }
}

/** Writes a chunk, waiting while the client's buffer is full; false once the client is gone. */
async function write (res: ServerResponse, chunk: Uint8Array): Promise<boolean> {
  if (!res.write(chunk)) {
    await new Promise<void>(resolve => {
      const done = (): void => { res.off('drain', done); res.off('close', done); resolve() }
      res.on('drain', done)
      res.on('close', done)
    })
  }
  return !res.destroyed
}

/** GET|HEAD /ipfs/CID[/path]: a raw block or a CARv1 stream (see the module comment). */
export async function serveGateway (node: PeerverseNode, req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
  if (req.method !== 'GET' && req.method !== 'HEAD') throw new ApiError(405, 'MethodNotAllowed', 'the gateway is read-only: GET and HEAD')
  const want = negotiate(url, req.headers)
  const content = node.content
  const identity = want.root.multihash.code === IDENTITY_CODE
  if (/(^|,)\s*only-if-cached\s*(,|$)/i.test(req.headers['cache-control'] ?? '') && !identity && !content.has(want.root)) {
    throw new NotCachedError(`${want.root.toString()} is not held here`)
  }
  const controller = new AbortController()
  res.on('close', () => { if (!res.writableFinished) controller.abort(new Error('client went away')) })
  const timer = setTimeout(() => { controller.abort(new DOMException('no first byte in time', 'TimeoutError')) }, CONTENT_FIRST_BYTE_TIMEOUT_MS)
  try {
    const signal = controller.signal
    const common: Record<string, string> = {
      'cache-control': GATEWAY_CACHE_CONTROL,
      'x-content-type-options': 'nosniff',
      vary: 'Accept',
      'x-ipfs-path': url.pathname
    }
    if (want.format === 'raw') {
      const bytes = identity ? want.root.multihash.digest : await content.block(want.root, { signal })
      const etag = `"${want.root.toString()}.raw"`
      const headers = { ...common, etag, 'x-ipfs-roots': want.root.toString(), 'content-type': RAW_MEDIA_TYPE, 'content-disposition': `attachment; filename="${want.root.toString()}.bin"` }
      clearTimeout(timer)
      if (req.headers['if-none-match'] === etag) { res.writeHead(304, headers); res.end(); return }
      res.writeHead(200, { ...headers, 'content-length': bytes.length })
      res.end(req.method === 'HEAD' ? undefined : bytes)
      return
    }
    if (identity && want.path.length > 0) throw new PathNotFoundError('an identity CID has no path below it')
    const { along, terminus } = want.path.length === 0 ? { along: [], terminus: want.root } : await content.dagPath(want.root, want.path, { signal })
    if (terminus.multihash.code !== IDENTITY_CODE) {
      // The root block before the status: 404 when no one has it, and the size for entity-bytes.
      const rootBytes = await content.block(terminus, { signal })
      if (want.entityBytes != null && want.entityBytes.from > 0) {
        const size = fileSizeOfRoot(terminus, rootBytes)
        if (size != null && want.entityBytes.from >= size) throw new EntityBytesOutOfRangeError(`entity-bytes starts at ${want.entityBytes.from}; the file has ${size} bytes`)
      }
    }
    const variant = `${want.scope}|${want.entityBytes == null ? '' : `${want.entityBytes.from}:${want.entityBytes.to}`}|${want.dups ? 'y' : 'n'}|${url.pathname}`
    const etag = `"${terminus.toString()}.car.${createHash('sha256').update(variant).digest('hex').slice(0, 16)}"`
    const headers = {
      ...common,
      etag,
      'x-ipfs-roots': [...along, terminus].map(c => c.toString()).join(','),
      'content-type': carContentType(want.dups),
      'content-disposition': `attachment; filename="${terminus.toString()}.car"`
    }
    clearTimeout(timer)
    if (req.headers['if-none-match'] === etag) { res.writeHead(304, headers); res.end(); return }
    res.writeHead(200, headers)
    if (req.method === 'HEAD') { res.end(); return }
    if (!await write(res, encodeCarHeader([terminus]))) return
    const blocks = content.dagBlocks(terminus, { scope: want.scope, entityBytes: want.entityBytes, dups: want.dups, along, signal, hints: [want.root] })
    for await (const block of blocks) {
      for (const piece of encodeCarBlock(block.cid, block.bytes)) {
        if (!await write(res, piece)) return
      }
    }
    res.end()
  } finally {
    clearTimeout(timer)
  }
}
