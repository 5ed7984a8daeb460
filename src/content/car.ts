/**
 * CARv1 (ipld.io/specs/transport/car/carv1): the archive format of the trustless gateway and of
 * `peerverse export` / `import`. A CAR is a varint-prefixed DAG-CBOR header {version: 1, roots},
 * then one frame per block: varint(length of CID and bytes), the CID's bytes, the block's bytes.
 *
 * The writer only frames blocks: it never holds more than the block it is given. The reader takes
 * a byte stream (a file, a request body) and yields one block at a time, each checked against its
 * CID before it is yielded, so nothing a reader of it stores is unverified; it refuses the first
 * frame that is malformed, oversize or does not match its CID with a named error. Pure: no I/O.
 */
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { varint } from 'multiformats'
import { MAX_BLOCK_BYTES } from './blocks.ts'
import { BlockVerificationError, UnsupportedContentError, verifyBlock } from './reader.ts'
import type { Block } from './unixfs.ts'

/** Bytes of a CAR header (the DAG-CBOR {version, roots} after its varint). */
export const MAX_CAR_HEADER_BYTES = 64 * 1024
/** Roots one CAR may name. */
export const MAX_CAR_ROOTS = 64
/** Bytes of a CID inside a block frame (a CIDv1 with a 64-byte digest fits with room). */
export const MAX_CAR_CID_BYTES = 128
/** Blocks one CAR may carry: a file of MAX_FILE_LEAVES leaves plus its interior nodes, with room for directories. */
export const MAX_CAR_BLOCKS = (1 << 20) + (1 << 14)
/** Bytes of one frame: a CID and a block of at most MAX_BLOCK_BYTES. */
export const MAX_CAR_FRAME_BYTES = MAX_CAR_CID_BYTES + MAX_BLOCK_BYTES
/** Bytes of a length varint we read (9 bytes of 7 bits exceed any frame we take). */
const MAX_VARINT_BYTES = 9

/** The media type of a CARv1 stream as the gateway sends it (dfs order, with or without duplicates). */
export function carContentType (dups: boolean): string {
  return `application/vnd.ipld.car; version=1; order=dfs; dups=${dups ? 'y' : 'n'}`
}

/** Bytes that are not a CARv1: a bad varint, header, CID or frame, or a stream cut short. */
export class MalformedCarError extends Error {
  name = 'MalformedCarError'
}

/** A block whose bytes do not hash to its CID. */
export class CarBlockMismatchError extends Error {
  name = 'CarBlockMismatchError'
}

/** A CAR past one of its limits: header bytes, roots, frame bytes or blocks. */
export class CarTooLargeError extends Error {
  name = 'CarTooLargeError'
}

function varintBytes (n: number): Uint8Array {
  const out = new Uint8Array(varint.encodingLength(n))
  varint.encodeTo(n, out, 0)
  return out
}

/** The header of a CARv1 naming `roots`: varint(length) then DAG-CBOR {version: 1, roots}. */
export function encodeCarHeader (roots: CID[]): Uint8Array {
  const body = dagCbor.encode({ version: 1, roots })
  const len = varintBytes(body.length)
  const out = new Uint8Array(len.length + body.length)
  out.set(len, 0)
  out.set(body, len.length)
  return out
}

/** One block's frame as pieces to write in order (no copy of the block): varint, CID, bytes. */
export function encodeCarBlock (cid: CID, bytes: Uint8Array): [Uint8Array, Uint8Array, Uint8Array] {
  return [varintBytes(cid.bytes.length + bytes.length), cid.bytes, bytes]
}

export interface CarReadOptions {
  /** Blocks taken at most (default MAX_CAR_BLOCKS). */
  maxBlocks?: number
  signal?: AbortSignal
}

/** Reads exact byte counts from a chunked stream, holding only what is asked for. */
class ByteQueue {
  private readonly it: AsyncIterator<Uint8Array>
  private readonly chunks: Uint8Array[] = []
  private buffered = 0
  private ended = false
  /** Bytes consumed so far (for error messages). */
  offset = 0

  constructor (source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>) {
    this.it = Symbol.asyncIterator in source
      ? (source as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]()
      : (async function * () { yield * (source as Iterable<Uint8Array>) })()
  }

  /** Pulls chunks until `n` bytes are buffered or the stream ends; whether they are. */
  private async fill (n: number): Promise<boolean> {
    while (this.buffered < n && !this.ended) {
      const next = await this.it.next()
      if (next.done === true) { this.ended = true; break }
      const chunk = next.value instanceof Uint8Array ? next.value : new Uint8Array(next.value as ArrayBuffer)
      if (chunk.length === 0) continue
      this.chunks.push(chunk)
      this.buffered += chunk.length
    }
    return this.buffered >= n
  }

  /** True when no byte is left. */
  async atEnd (): Promise<boolean> {
    return !(await this.fill(1))
  }

  /** The next `n` bytes; MalformedCarError when the stream ends first. */
  async take (n: number, what: string): Promise<Uint8Array> {
    if (!(await this.fill(n))) throw new MalformedCarError(`the CAR ends inside ${what} at byte ${this.offset + this.buffered}`)
    const out = this.chunks[0].length >= n ? this.chunks[0].subarray(0, n) : new Uint8Array(n)
    let filled = 0
    while (filled < n) {
      const head = this.chunks[0]
      const k = Math.min(n - filled, head.length)
      if (out.buffer !== head.buffer || out.byteOffset !== head.byteOffset) out.set(head.subarray(0, k), filled)
      filled += k
      if (k === head.length) this.chunks.shift()
      else this.chunks[0] = head.subarray(k)
    }
    this.buffered -= n
    this.offset += n
    return out
  }

  /** An unsigned LEB128 varint of at most MAX_VARINT_BYTES bytes. */
  async varint (what: string): Promise<number> {
    let value = 0
    for (let i = 0; i < MAX_VARINT_BYTES; i++) {
      const b = (await this.take(1, what))[0]
      value += (b & 0x7f) * 2 ** (7 * i)
      if ((b & 0x80) === 0) {
        if (i > 0 && b === 0) throw new MalformedCarError(`${what} at byte ${this.offset - i - 1} is not a minimal varint`)
        return value
      }
    }
    throw new MalformedCarError(`${what} at byte ${this.offset - MAX_VARINT_BYTES} is a varint longer than ${MAX_VARINT_BYTES} bytes`)
  }

  /** Stops the underlying stream (an early exit). */
  async close (): Promise<void> {
    await this.it.return?.()
  }
}

/** A CARv1 being read: its roots, then its blocks one at a time. */
export interface CarStream {
  version: 1
  roots: CID[]
  /** The blocks, each verified against its CID; throws the first bad frame's error. */
  blocks: () => AsyncGenerator<Block>
}

/** Parses a CARv1 header's DAG-CBOR; MalformedCarError for anything but {version: 1, roots: [CID, ...]}. */
export function decodeCarHeader (bytes: Uint8Array): { version: 1, roots: CID[] } {
  let header: unknown
  try {
    header = dagCbor.decode(bytes)
  } catch (err) {
    throw new MalformedCarError(`the CAR header is not DAG-CBOR: ${(err as Error).message}`)
  }
  if (header == null || typeof header !== 'object' || Array.isArray(header)) throw new MalformedCarError('the CAR header is not a map')
  const h = header as Record<string, unknown>
  if (h.version === 2) throw new MalformedCarError('CARv2 is not supported; convert it to CARv1')
  if (h.version !== 1) throw new MalformedCarError(`the CAR header names version ${String(h.version)}, not 1`)
  if (!Array.isArray(h.roots) || h.roots.length === 0) throw new MalformedCarError('the CAR header names no roots')
  if (h.roots.length > MAX_CAR_ROOTS) throw new CarTooLargeError(`the CAR header names ${h.roots.length} roots, more than ${MAX_CAR_ROOTS}`)
  const roots: CID[] = []
  for (const r of h.roots) {
    const cid = CID.asCID(r)
    if (cid == null) throw new MalformedCarError('a CAR root is not a CID')
    roots.push(cid)
  }
  const extra = Object.keys(h).filter(k => k !== 'version' && k !== 'roots')
  if (extra.length > 0) throw new MalformedCarError(`the CAR header has unknown fields: ${extra.slice(0, 4).join(', ')}`)
  return { version: 1, roots }
}

/**
 * Opens a CARv1 stream: reads and checks its header (MalformedCarError, CarTooLargeError), then
 * `blocks()` yields each block after checking its bytes against its CID (CarBlockMismatchError).
 * Only one frame is held at a time.
 */
export async function readCar (source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, options: CarReadOptions = {}): Promise<CarStream> {
  const maxBlocks = options.maxBlocks ?? MAX_CAR_BLOCKS
  const q = new ByteQueue(source)
  let header: { version: 1, roots: CID[] }
  try {
    const headerLength = await q.varint('the header length')
    if (headerLength === 0) throw new MalformedCarError('the CAR header is empty')
    if (headerLength > MAX_CAR_HEADER_BYTES) throw new CarTooLargeError(`the CAR header is ${headerLength} bytes, more than ${MAX_CAR_HEADER_BYTES}`)
    header = decodeCarHeader(await q.take(headerLength, 'the header'))
  } catch (err) {
    await q.close().catch(() => {})
    throw err
  }
  async function * blocks (): AsyncGenerator<Block> {
    let count = 0
    try {
      while (!(await q.atEnd())) {
        options.signal?.throwIfAborted()
        const at = q.offset
        const length = await q.varint('a block frame length')
        if (length === 0) throw new MalformedCarError(`empty block frame at byte ${at}`)
        if (length > MAX_CAR_FRAME_BYTES) throw new CarTooLargeError(`the block frame at byte ${at} is ${length} bytes, more than ${MAX_CAR_FRAME_BYTES}`)
        if (++count > maxBlocks) throw new CarTooLargeError(`the CAR has more than ${maxBlocks} blocks`)
        const frame = await q.take(length, `the block frame at byte ${at}`)
        let cid: CID
        let bytes: Uint8Array
        try {
          [cid, bytes] = CID.decodeFirst(frame)
        } catch (err) {
          throw new MalformedCarError(`the block frame at byte ${at} does not start with a CID: ${(err as Error).message}`)
        }
        if (cid.bytes.length > MAX_CAR_CID_BYTES) throw new MalformedCarError(`the CID at byte ${at} is ${cid.bytes.length} bytes, more than ${MAX_CAR_CID_BYTES}`)
        if (bytes.length > MAX_BLOCK_BYTES) throw new CarTooLargeError(`the block ${cid.toString()} is ${bytes.length} bytes, more than ${MAX_BLOCK_BYTES}`)
        try {
          await verifyBlock(cid, bytes)
        } catch (err) {
          if (err instanceof BlockVerificationError) throw new CarBlockMismatchError(`the block at byte ${at} does not match its CID ${cid.toString()}`)
          if (err instanceof UnsupportedContentError) throw new UnsupportedContentError(`the block ${cid.toString()} at byte ${at}: ${err.message}`)
          throw err
        }
        yield { cid, bytes }
      }
    } finally {
      await q.close().catch(() => {})
    }
  }
  return { version: 1, roots: header.roots, blocks }
}
