/**
 * Turning bytes into content-addressed blocks that any IPFS tool names the same way.
 *
 * Layout: the UnixFS "unixfs-v1-2025" profile (IPIP-499): fixed 1 MiB chunks stored as raw leaves
 * (CIDv1, raw codec, sha2-256), a balanced DAG of dag-pb UnixFS file nodes with up to 1024 links
 * each, and a single-chunk file named by its raw leaf alone. The same bytes give the same root CID
 * here as in Helia or Kubo with that profile. Pure apart from the `put` callback that stores blocks.
 */
import * as dagPb from '@ipld/dag-pb'
import { UnixFS } from 'ipfs-unixfs'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'

/** Bytes per leaf block. */
export const CHUNK_SIZE = 1_048_576
/** Links per interior node of a file DAG. */
export const MAX_LINKS_PER_NODE = 1024

export interface Block {
  cid: CID
  bytes: Uint8Array
}

export interface ImportResult {
  cid: CID
  /** Bytes of file content. */
  size: number
  /** Blocks written, leaves and interior nodes. */
  blocks: number
}

interface Node {
  cid: CID
  /** Bytes of file content under this node. */
  fileSize: number
  /** Bytes of all blocks under this node, this one included (dag-pb Tsize). */
  treeSize: number
}

/** Re-cuts a byte stream into CHUNK_SIZE pieces (the last may be shorter). */
async function * chunks (source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, size: number): AsyncGenerator<Uint8Array> {
  let buffer = new Uint8Array(size)
  let filled = 0
  for await (const piece of source) {
    let offset = 0
    while (offset < piece.length) {
      const n = Math.min(size - filled, piece.length - offset)
      buffer.set(piece.subarray(offset, offset + n), filled)
      filled += n
      offset += n
      if (filled === size) {
        yield buffer
        buffer = new Uint8Array(size)
        filled = 0
      }
    }
  }
  if (filled > 0) yield buffer.subarray(0, filled)
}

/** Names raw bytes as a raw-codec CIDv1 block. */
export async function rawBlock (bytes: Uint8Array): Promise<Block> {
  return { cid: CID.createV1(raw.code, await sha256.digest(bytes)), bytes }
}

async function parentNode (children: Node[]): Promise<{ node: Node, block: Block }> {
  const unixfs = new UnixFS({ type: 'file' })
  for (const c of children) unixfs.addBlockSize(BigInt(c.fileSize))
  const bytes = dagPb.encode(dagPb.prepare({
    Data: unixfs.marshal(),
    Links: children.map(c => ({ Name: '', Tsize: c.treeSize, Hash: c.cid }))
  }))
  const cid = CID.createV1(dagPb.code, await sha256.digest(bytes))
  const fileSize = children.reduce((n, c) => n + c.fileSize, 0)
  const treeSize = bytes.length + children.reduce((n, c) => n + c.treeSize, 0)
  return { node: { cid, fileSize, treeSize }, block: { cid, bytes } }
}

/**
 * Chunks a byte stream into blocks, hands each to `put` as it is made (leaves first, the root
 * last), and returns the root. Memory stays at one chunk plus the per-leaf metadata.
 */
export async function importFile (source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, put: (block: Block) => Promise<void>): Promise<ImportResult> {
  let level: Node[] = []
  let blocks = 0
  for await (const chunk of chunks(source, CHUNK_SIZE)) {
    const block = await rawBlock(chunk)
    await put(block)
    blocks++
    level.push({ cid: block.cid, fileSize: chunk.length, treeSize: chunk.length })
  }
  if (level.length === 0) {
    // An empty file is the empty raw block.
    const block = await rawBlock(new Uint8Array(0))
    await put(block)
    return { cid: block.cid, size: 0, blocks: 1 }
  }
  if (level.length === 1) return { cid: level[0].cid, size: level[0].fileSize, blocks }
  // Balanced layout: group each level into nodes of MAX_LINKS_PER_NODE until one root is left.
  while (level.length > 1) {
    const next: Node[] = []
    for (let i = 0; i < level.length; i += MAX_LINKS_PER_NODE) {
      const { node, block } = await parentNode(level.slice(i, i + MAX_LINKS_PER_NODE))
      await put(block)
      blocks++
      next.push(node)
    }
    level = next
  }
  return { cid: level[0].cid, size: level[0].fileSize, blocks }
}
