/**
 * UnixFS directories: building one from named children, listing one, and walking a path through
 * nested ones, so a world or asset pack can be published as a single root CID with relative paths.
 *
 * A directory is one dag-pb node with UnixFS type 'directory' and one named link per child,
 * sorted by the UTF-8 bytes of the name, encoded exactly as ipfs-unixfs-importer does with the
 * unixfs-v1-2025 profile, so the same tree gives the same root CID here as in Helia or Kubo. We
 * only write flat (non-sharded) directories: the importer turns a directory into a HAMT shard once
 * its encoded node passes SHARD_SPLIT_THRESHOLD_BYTES, so we refuse anything that could get there
 * rather than name it differently. Reading refuses sharded directories the same way.
 *
 * Every block read is checked against its CID, so the block source may be an untrusted peer. Paths
 * are raw UnixFS names joined by '/': percent-decoding a URL path is the caller's job, done once,
 * before resolvePath (we never decode, so '%2F' cannot smuggle a separator into a name).
 */
import * as dagPb from '@ipld/dag-pb'
import { UnixFS } from 'ipfs-unixfs'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { create as createDigest } from 'multiformats/hashes/digest'
import { sha256 } from 'multiformats/hashes/sha2'
import { UnsupportedContentError, verifyBlock, type GetBlock } from './reader.ts'
import { CHUNK_SIZE, MAX_LINKS_PER_NODE, type Block } from './unixfs.ts'

/**
 * Encoded node size above which ipfs-unixfs-importer shards a directory (its default
 * shardSplitThresholdBytes; the unixfs-v1-2025 profile measures it with the 'block-bytes'
 * strategy, the exact dag-pb encoding of the node, and shards when it is strictly greater).
 */
export const SHARD_SPLIT_THRESHOLD_BYTES = 262_144
/** UTF-8 bytes in one name (the common file system NAME_MAX). */
export const MAX_NAME_BYTES = 255
/**
 * Children of one directory. The largest link we accept is 308 encoded bytes (36-byte CIDv1
 * sha2-256, a MAX_NAME_BYTES name, an 8-byte Tsize varint, protobuf framing) and the directory's
 * Data field is 4, so floor((262144 - 4) / 308) = 851 entries stay within the shard threshold
 * whatever their names and sizes are.
 */
export const MAX_DIRECTORY_ENTRIES = 851
/** Path segments resolvePath follows at most (each is one block fetch). */
export const MAX_PATH_DEPTH = 64
/** Characters in a path given to resolvePath. */
export const MAX_PATH_LENGTH = 4096

export class InvalidPathError extends Error {
  name = 'InvalidPathError'
}

export class DuplicateNameError extends Error {
  name = 'DuplicateNameError'
}

export class DirectoryTooLargeError extends Error {
  name = 'DirectoryTooLargeError'
}

export class PathNotFoundError extends Error {
  name = 'PathNotFoundError'
}

export class NotADirectoryError extends Error {
  name = 'NotADirectoryError'
}

export interface DirEntry {
  name: string
  cid: CID
  /** dag-pb Tsize: bytes of all blocks under the child, its root included (see fileTreeSize). */
  size: number
}

export interface ResolvedPath {
  cid: CID
  /** Last path segment ('' for the root itself). */
  name: string
  kind: 'file' | 'directory'
}

const textEncoder = new TextEncoder()
/** Matches only unpaired surrogates (the u flag reads pairs as one code point). */
const LONE_SURROGATE = /[\uD800-\uDFFF]/u

/** Why `name` cannot be a directory entry, or null when it can. */
export function nameProblem (name: string): string | null {
  if (typeof name !== 'string') return 'name must be a string'
  if (name === '') return 'name is empty'
  if (name === '.' || name === '..') return `name ${JSON.stringify(name)} is reserved`
  if (name.includes('/')) return `name ${JSON.stringify(name)} contains '/'`
  if (name.includes('\0')) return `name ${JSON.stringify(name)} contains NUL`
  if (LONE_SURROGATE.test(name)) return `name ${JSON.stringify(name)} is not valid Unicode`
  const bytes = textEncoder.encode(name).length
  if (bytes > MAX_NAME_BYTES) return `name is ${bytes} UTF-8 bytes, more than ${MAX_NAME_BYTES}`
  return null
}

/** Byte order of UTF-8 names, the order dag-pb requires for links. */
function compareNames (a: Uint8Array, b: Uint8Array): number {
  return Buffer.compare(a, b)
}

/**
 * Encodes one flat UnixFS directory over `entries`, hands its block to `put`, and returns its CID
 * (CIDv1 dag-pb sha2-256) and its Tsize (for linking it from a parent directory).
 */
export async function buildDirectory (entries: DirEntry[], put: (block: Block) => Promise<void>): Promise<{ cid: CID, size: number }> {
  if (!Array.isArray(entries)) throw new TypeError('entries must be an array')
  if (entries.length > MAX_DIRECTORY_ENTRIES) throw new DirectoryTooLargeError(`${entries.length} entries, more than ${MAX_DIRECTORY_ENTRIES}`)
  const links: Array<{ name: Uint8Array, link: dagPb.PBLink }> = []
  const seen = new Set<string>()
  let size = 0
  for (const entry of entries) {
    const problem = nameProblem(entry?.name)
    if (problem != null) throw new InvalidPathError(problem)
    if (seen.has(entry.name)) throw new DuplicateNameError(`name ${JSON.stringify(entry.name)} appears twice`)
    seen.add(entry.name)
    const cid = CID.asCID(entry.cid)
    if (cid == null) throw new TypeError(`entry ${JSON.stringify(entry.name)}: cid is not a CID`)
    if (!Number.isSafeInteger(entry.size) || entry.size < 0) throw new TypeError(`entry ${JSON.stringify(entry.name)}: size must be a non-negative integer`)
    links.push({ name: textEncoder.encode(entry.name), link: { Name: entry.name, Tsize: entry.size, Hash: cid } })
    size += entry.size
  }
  links.sort((a, b) => compareNames(a.name, b.name))
  const bytes = dagPb.encode(dagPb.prepare({
    Data: new UnixFS({ type: 'directory' }).marshal(),
    Links: links.map(l => l.link)
  }))
  // Only reachable with children named by longer CIDs than the CIDv1 sha2-256 the limit assumes.
  if (bytes.length > SHARD_SPLIT_THRESHOLD_BYTES) throw new DirectoryTooLargeError(`directory node is ${bytes.length} bytes, more than ${SHARD_SPLIT_THRESHOLD_BYTES}`)
  size += bytes.length
  if (!Number.isSafeInteger(size)) throw new DirectoryTooLargeError('directory Tsize is beyond 2^53 - 1')
  const cid = CID.createV1(dagPb.code, await sha256.digest(bytes))
  await put({ cid, bytes })
  return { cid, size }
}

type Node = { kind: 'file' } | { kind: 'directory', links: dagPb.PBLink[] }

/** Fetches, verifies and classifies the node at `cid`; raw leaves are files without a fetch. */
async function readNode (get: GetBlock, cid: CID, signal?: AbortSignal): Promise<Node> {
  signal?.throwIfAborted()
  if (cid.code === raw.code) return { kind: 'file' }
  if (cid.code !== dagPb.code) throw new UnsupportedContentError(`codec 0x${cid.code.toString(16)} is not UnixFS`)
  const bytes = await get(cid, { signal })
  await verifyBlock(cid, bytes)
  let node: dagPb.PBNode
  let unixfs: UnixFS
  try {
    node = dagPb.decode(bytes)
    if (node.Data == null) throw new Error('no Data')
    unixfs = UnixFS.unmarshal(node.Data)
  } catch (err) {
    throw new UnsupportedContentError(`${cid.toString()} is not a UnixFS node: ${(err as Error).message}`)
  }
  if (unixfs.type === 'file' || unixfs.type === 'raw') return { kind: 'file' }
  if (unixfs.type === 'directory') return { kind: 'directory', links: node.Links }
  throw new UnsupportedContentError(`${cid.toString()} is a UnixFS ${unixfs.type}, which we do not read`)
}

/**
 * The entries of the directory at `cid`, in stored order. Names are returned as stored: a
 * directory made elsewhere may hold names nameProblem would refuse, so check them before using
 * one as a local file name.
 */
export async function listDirectory (get: GetBlock, cid: CID, options: { signal?: AbortSignal } = {}): Promise<DirEntry[]> {
  const node = await readNode(get, cid, options.signal)
  if (node.kind !== 'directory') throw new NotADirectoryError(`${cid.toString()} is a file`)
  return node.links.map(l => ({ name: l.Name ?? '', cid: l.Hash, size: l.Tsize ?? 0 }))
}

/**
 * Walks `path` ('/a/b/c.glb'; empty segments are skipped, so '' and '/' name the root) from `root`
 * and returns what it names. Segments must already be percent-decoded; '.' and '..' are refused,
 * not interpreted.
 */
export async function resolvePath (get: GetBlock, root: CID, path: string, options: { signal?: AbortSignal } = {}): Promise<ResolvedPath> {
  if (typeof path !== 'string') throw new InvalidPathError('path must be a string')
  if (path.length > MAX_PATH_LENGTH) throw new InvalidPathError(`path is longer than ${MAX_PATH_LENGTH} characters`)
  const segments = path.split('/').filter(s => s !== '')
  if (segments.length > MAX_PATH_DEPTH) throw new InvalidPathError(`path has ${segments.length} segments, more than ${MAX_PATH_DEPTH}`)
  for (const segment of segments) {
    const problem = nameProblem(segment)
    if (problem != null) throw new InvalidPathError(problem)
  }
  let cid = root
  let name = ''
  for (let i = 0; i < segments.length; i++) {
    const node = await readNode(get, cid, options.signal)
    const here = '/' + segments.slice(0, i).join('/')
    if (node.kind !== 'directory') throw new NotADirectoryError(`${here} is a file`)
    const link = node.links.find(l => l.Name === segments[i])
    if (link == null) throw new PathNotFoundError(`${here} has no entry ${JSON.stringify(segments[i])}`)
    cid = link.Hash
    name = segments[i]
  }
  const node = await readNode(get, cid, options.signal)
  return { cid, name, kind: node.kind }
}

interface Sizes {
  /** Bytes of file content under the node. */
  fileSize: number
  /** Bytes of all blocks under the node, itself included. */
  treeSize: number
}

/** Stand-in for a child CID: every CID in our file DAGs is 36 bytes, which is all encoding needs. */
const PLACEHOLDER_CID = CID.createV1(dagPb.code, createDigest(sha256.code, new Uint8Array(32)))

/** Sizes of the interior file node over `children`, encoded as importFile encodes it. */
function parentSizes (children: Sizes[]): Sizes {
  const unixfs = new UnixFS({ type: 'file' })
  for (const c of children) unixfs.addBlockSize(BigInt(c.fileSize))
  const bytes = dagPb.encode(dagPb.prepare({
    Data: unixfs.marshal(),
    Links: children.map(c => ({ Name: '', Tsize: c.treeSize, Hash: PLACEHOLDER_CID }))
  }))
  return {
    fileSize: children.reduce((n, c) => n + c.fileSize, 0),
    treeSize: bytes.length + children.reduce((n, c) => n + c.treeSize, 0)
  }
}

/**
 * The Tsize a directory link to a file of `fileSize` bytes must carry, when the file was made by
 * importFile (the unixfs-v1-2025 layout): the bytes of all its blocks. Computed from the size alone,
 * without the blocks. In the balanced layout every level is a run of identical full nodes plus at
 * most one last node, so each level costs two encodings at most.
 */
export function fileTreeSize (fileSize: number): number {
  if (!Number.isSafeInteger(fileSize) || fileSize < 0) throw new TypeError('fileSize must be a non-negative integer')
  // A file of at most one chunk is its raw leaf (the empty file is the empty raw block).
  if (fileSize <= CHUNK_SIZE) return fileSize
  let full: Sizes = { fileSize: CHUNK_SIZE, treeSize: CHUNK_SIZE }
  let fullCount = Math.floor(fileSize / CHUNK_SIZE)
  const rest = fileSize % CHUNK_SIZE
  let last: Sizes | null = rest > 0 ? { fileSize: rest, treeSize: rest } : null
  while (fullCount + (last == null ? 0 : 1) > 1) {
    const groups = Math.floor(fullCount / MAX_LINKS_PER_NODE)
    const left = fullCount % MAX_LINKS_PER_NODE
    const tail = left > 0 || last != null ? parentSizes([...new Array<Sizes>(left).fill(full), ...(last == null ? [] : [last])]) : null
    if (groups > 0) full = parentSizes(new Array<Sizes>(MAX_LINKS_PER_NODE).fill(full))
    fullCount = groups
    last = tail
  }
  return (fullCount === 1 ? full : last as Sizes).treeSize
}
