/**
 * Reading a UnixFS file, whole or a byte range, from any block source. Only the blocks that cover
 * the range are fetched, in order, and every block is checked against its CID before use, so the
 * source may be an untrusted peer.
 */
import * as dagPb from '@ipld/dag-pb'
import { UnixFS } from 'ipfs-unixfs'
import type { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'

/** Depth of a file DAG we follow at most (1024-way nodes: depth 4 already names 10^12 chunks). */
export const MAX_DAG_DEPTH = 8

export class BlockVerificationError extends Error {
  name = 'BlockVerificationError'
}

export class UnsupportedContentError extends Error {
  name = 'UnsupportedContentError'
}

export class InvalidRangeError extends Error {
  name = 'InvalidRangeError'
}

export type GetBlock = (cid: CID, options: { signal?: AbortSignal }) => Promise<Uint8Array>

export interface ReadOptions {
  offset?: number
  length?: number
  signal?: AbortSignal
}

/** Checks that `bytes` hash to `cid`; BlockVerificationError otherwise. */
export async function verifyBlock (cid: CID, bytes: Uint8Array): Promise<void> {
  if (cid.multihash.code !== sha256.code) throw new UnsupportedContentError(`hash 0x${cid.multihash.code.toString(16)} is not supported`)
  const digest = await sha256.digest(bytes)
  if (Buffer.compare(digest.digest, cid.multihash.digest) !== 0) throw new BlockVerificationError(`block does not match ${cid.toString()}`)
}

/** The file size a root names, reading only the root block. */
export async function fileSize (get: GetBlock, cid: CID, options: { signal?: AbortSignal } = {}): Promise<number> {
  const bytes = await get(cid, options)
  await verifyBlock(cid, bytes)
  if (cid.code === raw.code) return bytes.length
  return Number(decodeFileNode(cid, bytes).unixfs.fileSize())
}

function decodeFileNode (cid: CID, bytes: Uint8Array): { node: dagPb.PBNode, unixfs: UnixFS } {
  if (cid.code !== dagPb.code) throw new UnsupportedContentError(`codec 0x${cid.code.toString(16)} is not a UnixFS file`)
  let node: dagPb.PBNode
  let unixfs: UnixFS
  try {
    node = dagPb.decode(bytes)
    if (node.Data == null) throw new Error('no Data')
    unixfs = UnixFS.unmarshal(node.Data)
  } catch (err) {
    throw new UnsupportedContentError(`${cid.toString()} is not a UnixFS node: ${(err as Error).message}`)
  }
  if (unixfs.type !== 'file' && unixfs.type !== 'raw') throw new UnsupportedContentError(`${cid.toString()} is a UnixFS ${unixfs.type}, not a file`)
  if (unixfs.blockSizes.length !== node.Links.length) throw new UnsupportedContentError(`${cid.toString()}: ${node.Links.length} links but ${unixfs.blockSizes.length} block sizes`)
  return { node, unixfs }
}

/**
 * Yields the bytes of [offset, offset + length) of the file at `cid` (to the end when length is
 * not given), fetching and verifying only the blocks that hold them.
 */
export async function * readFile (get: GetBlock, cid: CID, options: ReadOptions = {}): AsyncGenerator<Uint8Array> {
  const offset = options.offset ?? 0
  if (!Number.isSafeInteger(offset) || offset < 0) throw new InvalidRangeError('offset must be a non-negative integer')
  if (options.length != null && (!Number.isSafeInteger(options.length) || options.length < 0)) throw new InvalidRangeError('length must be a non-negative integer')
  const end = options.length == null ? Infinity : offset + options.length
  if (end <= offset) return
  yield * walk(get, cid, 0, offset, end, 0, options.signal)
}

async function * walk (get: GetBlock, cid: CID, start: number, from: number, to: number, depth: number, signal?: AbortSignal): AsyncGenerator<Uint8Array> {
  if (depth > MAX_DAG_DEPTH) throw new UnsupportedContentError(`file DAG deeper than ${MAX_DAG_DEPTH}`)
  signal?.throwIfAborted()
  const bytes = await get(cid, { signal })
  await verifyBlock(cid, bytes)
  if (cid.code === raw.code) {
    const a = Math.max(from - start, 0)
    const b = Math.min(to - start, bytes.length)
    if (b > a) yield bytes.subarray(a, b)
    return
  }
  const { node, unixfs } = decodeFileNode(cid, bytes)
  let pos = start
  if (unixfs.data != null && unixfs.data.length > 0) {
    const a = Math.max(from - pos, 0)
    const b = Math.min(to - pos, unixfs.data.length)
    if (b > a) yield unixfs.data.subarray(a, b)
    pos += unixfs.data.length
  }
  for (let i = 0; i < node.Links.length; i++) {
    const size = Number(unixfs.blockSizes[i])
    if (pos >= to) return
    if (pos + size > from) yield * walk(get, node.Links[i].Hash, pos, from, to, depth + 1, signal)
    pos += size
  }
}

export interface Leaf {
  cid: CID
  /** Offset of the leaf's first byte in the file. */
  offset: number
  size: number
}

/** Most leaves we list for one file (2^20 leaves of 1 MiB: 1 TiB). */
export const MAX_FILE_LEAVES = 1 << 20

/**
 * Lists a file's leaves in order, fetching (and verifying) only the root and interior nodes.
 * A raw root is its own single leaf. Inline data in interior nodes is not supported here (our
 * importer and the unixfs-v1-2025 profile never write it).
 */
export async function fileLeaves (get: GetBlock, root: CID, options: { signal?: AbortSignal } = {}): Promise<Leaf[]> {
  const leaves: Leaf[] = []
  const visit = async (cid: CID, offset: number, size: number | undefined, depth: number): Promise<void> => {
    if (depth > MAX_DAG_DEPTH) throw new UnsupportedContentError(`file DAG deeper than ${MAX_DAG_DEPTH}`)
    if (cid.code === raw.code && size != null) {
      if (leaves.length >= MAX_FILE_LEAVES) throw new UnsupportedContentError(`file has more than ${MAX_FILE_LEAVES} leaves`)
      leaves.push({ cid, offset, size })
      return
    }
    options.signal?.throwIfAborted()
    const bytes = await get(cid, options)
    await verifyBlock(cid, bytes)
    if (cid.code === raw.code) {
      leaves.push({ cid, offset, size: bytes.length })
      return
    }
    const { node, unixfs } = decodeFileNode(cid, bytes)
    if (unixfs.data != null && unixfs.data.length > 0) throw new UnsupportedContentError(`${cid.toString()} has inline data`)
    let pos = offset
    for (let i = 0; i < node.Links.length; i++) {
      const childSize = Number(unixfs.blockSizes[i])
      await visit(node.Links[i].Hash, pos, childSize, depth + 1)
      pos += childSize
    }
  }
  await visit(root, 0, undefined, 0)
  return leaves
}
