/**
 * Which blocks a CAR of a UnixFS DAG carries, in depth-first order (the trustless gateway's
 * `order=dfs`): the blocks that prove a path under a root, then the DAG at its end, whole
 * (`dag-scope=all`), the entity alone (`entity`: a whole file, or a directory's own node), or its
 * root block (`block`), optionally only the blocks a byte range of a file needs (`entity-bytes`).
 * Blocks are yielded one at a time as they are read or fetched, never the DAG at once; with
 * `dups: false` a block already sent is not sent again. Identity CIDs are never sent (their bytes
 * are inside the CID). Pure apart from the DagSource it reads through.
 */
import * as dagPb from '@ipld/dag-pb'
import { UnixFS } from 'ipfs-unixfs'
import type { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { listDirectory, NotADirectoryError, PathNotFoundError, MAX_PATH_DEPTH } from './directory.ts'
import { fileLeaves, MAX_DAG_DEPTH, UnsupportedContentError, type GetBlock, type Leaf } from './reader.ts'
import type { Block } from './unixfs.ts'

/** Multihash code of an identity CID (its digest is the block). */
export const IDENTITY_CODE = 0x00
/** Directory levels a CAR walk follows below its root (a path's own levels are MAX_PATH_DEPTH). */
export const MAX_WALK_DEPTH = 64

export type DagScope = 'all' | 'entity' | 'block'

/** `entity-bytes=from:to`: inclusive offsets; negative ones count from the end; `*` is the end. */
export interface EntityBytes {
  from: number
  to: number | '*'
}

/** Where the walk reads blocks (each verified against its CID by the source). */
export interface DagSource {
  get: GetBlock
  /** A getter for one file's blocks that fetches its missing leaves in [from, to) ahead, in order; `release` when done. */
  file: (root: CID, leaves: Leaf[], from: number, to: number) => { get: GetBlock, release: () => void }
}

export interface DagWalkOptions {
  scope?: DagScope
  entityBytes?: EntityBytes
  /** Send a block again each time it recurs (default false: once). */
  dups?: boolean
  /** Blocks proving the path from the root to the walked CID, sent first. */
  along?: CID[]
  signal?: AbortSignal
}

/** The bytes [start, end) an `entity-bytes` names in a file of `size` bytes (empty when it names none). */
export function entityRange (e: EntityBytes, size: number): { start: number, end: number } {
  const from = e.from < 0 ? Math.max(size + e.from, 0) : e.from
  const last = e.to === '*' ? size - 1 : e.to < 0 ? size + e.to : Math.min(e.to, size - 1)
  const start = Math.min(from, size)
  const end = Math.max(start, Math.min(last + 1, size))
  return { start, end }
}

function isIdentity (cid: CID): boolean {
  return cid.multihash.code === IDENTITY_CODE
}

/** The UnixFS type of a dag-pb node ('none' without Data), or undefined when it is not UnixFS. */
function unixfsType (node: dagPb.PBNode): { type: string, unixfs?: UnixFS } {
  if (node.Data == null) return { type: 'none' }
  try {
    const unixfs = UnixFS.unmarshal(node.Data)
    return { type: unixfs.type, unixfs }
  } catch {
    return { type: 'none' }
  }
}

/** The byte size of a UnixFS file from its root block, or undefined when it is not a file. */
export function fileSizeOfRoot (cid: CID, bytes: Uint8Array): number | undefined {
  if (cid.code === raw.code) return bytes.length
  if (cid.code !== dagPb.code) return undefined
  let node: dagPb.PBNode
  try { node = dagPb.decode(bytes) } catch { return undefined }
  const { type, unixfs } = unixfsType(node)
  return (type === 'file' || type === 'raw') && unixfs != null ? Number(unixfs.fileSize()) : undefined
}

/**
 * The CIDs of the directories a path walks through under `root` (root first) and the CID it
 * names; PathNotFoundError or NotADirectoryError when it names nothing.
 */
export async function walkPath (get: GetBlock, root: CID, segments: string[], options: { signal?: AbortSignal } = {}): Promise<{ along: CID[], terminus: CID }> {
  if (segments.length > MAX_PATH_DEPTH) throw new PathNotFoundError(`paths are at most ${MAX_PATH_DEPTH} names deep`)
  const along: CID[] = []
  let cid = root
  for (const name of segments) {
    if (cid.code !== dagPb.code) throw new NotADirectoryError(`${cid.toString()} is not a directory`)
    const entries = await listDirectory(get, cid, options)
    const entry = entries.find(e => e.name === name)
    if (entry == null) throw new PathNotFoundError(`no ${JSON.stringify(name)} in ${cid.toString()}`)
    along.push(cid)
    cid = entry.cid
  }
  return { along, terminus: cid }
}

/** The blocks of a CAR for `cid` (see the module comment), in depth-first order. */
export async function * dagBlocks (source: DagSource, cid: CID, options: DagWalkOptions = {}): AsyncGenerator<Block> {
  const seen = new Set<string>()
  const dups = options.dups === true
  const signal = options.signal
  /** Whether a block goes out (not an identity CID, not sent before unless dups). */
  const fresh = (c: CID): boolean => {
    if (isIdentity(c)) return false
    if (dups) return true
    const key = c.toString()
    if (seen.has(key)) return false
    seen.add(key)
    return true
  }
  for (const c of options.along ?? []) {
    signal?.throwIfAborted()
    if (fresh(c)) yield { cid: c, bytes: await source.get(c, { signal }) }
  }
  if (isIdentity(cid)) return
  const scope = options.scope ?? 'all'
  const bytes = await source.get(cid, { signal })
  if (scope === 'block' || cid.code !== dagPb.code) {
    if (fresh(cid)) yield { cid, bytes }
    return
  }
  const node = dagPb.decode(bytes)
  const { type, unixfs } = unixfsType(node)
  if ((type === 'file' || type === 'raw') && unixfs != null) {
    yield * fileBlocks(source, cid, bytes, unixfs, options.entityBytes, fresh, signal)
    return
  }
  if (fresh(cid)) yield { cid, bytes }
  if (scope === 'entity') return
  // A directory (or any other dag-pb node): each child's whole DAG, in link order.
  yield * children(source, node, fresh, 1, signal)
}

async function * children (source: DagSource, node: dagPb.PBNode, fresh: (c: CID) => boolean, depth: number, signal?: AbortSignal): AsyncGenerator<Block> {
  for (const link of node.Links) {
    signal?.throwIfAborted()
    const c = link.Hash
    if (isIdentity(c)) continue
    if (depth > MAX_WALK_DEPTH) throw new UnsupportedContentError(`the DAG is deeper than ${MAX_WALK_DEPTH}`)
    const bytes = await source.get(c, { signal })
    if (c.code !== dagPb.code) {
      if (fresh(c)) yield { cid: c, bytes }
      continue
    }
    const child = dagPb.decode(bytes)
    const { type, unixfs } = unixfsType(child)
    if ((type === 'file' || type === 'raw') && unixfs != null) {
      yield * fileBlocks(source, c, bytes, unixfs, undefined, fresh, signal)
      continue
    }
    if (fresh(c)) yield { cid: c, bytes }
    yield * children(source, child, fresh, depth + 1, signal)
  }
}

/** A file's blocks covering [start, end) of it (all of it without a range), node before children. */
async function * fileBlocks (source: DagSource, root: CID, rootBytes: Uint8Array, unixfs: UnixFS, range: EntityBytes | undefined, fresh: (c: CID) => boolean, signal?: AbortSignal): AsyncGenerator<Block> {
  const size = Number(unixfs.fileSize())
  const { start, end } = range == null ? { start: 0, end: size } : entityRange(range, size)
  if (end <= start) {
    // A range that names no byte: the root alone, from which a client learns the size.
    if (fresh(root)) yield { cid: root, bytes: rootBytes }
    return
  }
  const leaves = await fileLeaves(source.get, root, { signal })
  const reader = source.file(root, leaves, start, end)
  try {
    yield * walkFile(reader.get, root, rootBytes, 0, start, end, 0, fresh, signal)
  } finally {
    reader.release()
  }
}

async function * walkFile (get: GetBlock, cid: CID, known: Uint8Array | undefined, pos: number, from: number, to: number, depth: number, fresh: (c: CID) => boolean, signal?: AbortSignal): AsyncGenerator<Block> {
  if (depth > MAX_DAG_DEPTH) throw new UnsupportedContentError(`the file DAG is deeper than ${MAX_DAG_DEPTH}`)
  if (isIdentity(cid)) return
  signal?.throwIfAborted()
  const bytes = known ?? await get(cid, { signal })
  if (fresh(cid)) yield { cid, bytes }
  if (cid.code === raw.code) return
  const node = dagPb.decode(bytes)
  const { unixfs } = unixfsType(node)
  if (unixfs == null) return
  let p = pos + (unixfs.data?.length ?? 0)
  for (let i = 0; i < node.Links.length; i++) {
    const size = Number(unixfs.blockSizes[i] ?? 0)
    if (p >= to) return
    if (p + size > from) yield * walkFile(get, node.Links[i].Hash, undefined, p, from, to, depth + 1, fresh, signal)
    p += size
  }
}
