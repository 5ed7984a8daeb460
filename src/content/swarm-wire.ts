/**
 * The wire format of `/peerverse/swarm/1.0.0`, pure encode and decode.
 *
 * One stream carries one download session for one root: the downloader sends OPEN with the root,
 * the holder answers BITFIELD (which of the root's leaves it holds, in file order), then the
 * downloader pipelines WANTs and the holder answers each with BLOCK or DONT_HAVE, in order.
 * A holder that is itself downloading the root pushes HAVE as leaves arrive; CANCEL withdraws a
 * WANT not yet answered (end game). Every frame is a varint length prefix then a type byte; the
 * format is versioned by the protocol id, and encoded samples are kept as test fixtures.
 */
import { Uint8ArrayList } from 'uint8arraylist'
import * as varint from 'uint8-varint'
import type { CID } from 'multiformats/cid'
import { decodeCid, MAX_BLOCK_BYTES } from './blockstore.ts'

export const SWARM_PROTOCOL = '/peerverse/swarm/1.0.0'
/** Largest frame: a block plus its CID and header. */
export const MAX_FRAME_BYTES = MAX_BLOCK_BYTES + 256
/** Leaves a bitfield may name: 2^20 leaves of 1 MiB is a 1 TiB file (a 128 KiB bitfield). */
export const MAX_BITFIELD_LEAVES = 1 << 20

export class SwarmProtocolError extends Error {
  name = 'SwarmProtocolError'
}

export type HolderStatus = 'none' | 'partial' | 'complete'

export type SwarmMessage =
  | { type: 'open', root: CID }
  | { type: 'bitfield', status: HolderStatus, leaves: number, bits: Uint8Array }
  | { type: 'want', cid: CID }
  | { type: 'block', cid: CID, bytes: Uint8Array }
  | { type: 'dont-have', cid: CID }
  | { type: 'have', index: number }
  | { type: 'cancel', cid: CID }

const T_OPEN = 1
const T_BITFIELD = 2
const T_WANT = 3
const T_BLOCK = 4
const T_DONT_HAVE = 5
const T_HAVE = 6
const T_CANCEL = 7

const STATUS: HolderStatus[] = ['none', 'partial', 'complete']

/** Bytes of a bitfield naming `leaves` leaves. */
export function bitfieldBytes (leaves: number): number {
  return Math.ceil(leaves / 8)
}

export function getBit (bits: Uint8Array, i: number): boolean {
  return (bits[i >> 3] & (0x80 >> (i & 7))) !== 0
}

export function setBit (bits: Uint8Array, i: number): void {
  bits[i >> 3] |= 0x80 >> (i & 7)
}

function withCid (type: number, cid: CID, tail?: Uint8Array): Uint8ArrayList {
  const head = new Uint8Array(1 + varint.encodingLength(cid.bytes.length))
  head[0] = type
  varint.encode(cid.bytes.length, head, 1)
  return tail == null ? new Uint8ArrayList(head, cid.bytes) : new Uint8ArrayList(head, cid.bytes, tail)
}

/** Encodes a message (without its length prefix); a block's bytes are not copied. */
export function encodeMessage (msg: SwarmMessage): Uint8ArrayList {
  switch (msg.type) {
    case 'open': return withCid(T_OPEN, msg.root)
    case 'want': return withCid(T_WANT, msg.cid)
    case 'dont-have': return withCid(T_DONT_HAVE, msg.cid)
    case 'cancel': return withCid(T_CANCEL, msg.cid)
    case 'block': return withCid(T_BLOCK, msg.cid, msg.bytes)
    case 'have': {
      const out = new Uint8Array(1 + varint.encodingLength(msg.index))
      out[0] = T_HAVE
      varint.encode(msg.index, out, 1)
      return new Uint8ArrayList(out)
    }
    case 'bitfield': {
      if (msg.bits.length !== bitfieldBytes(msg.leaves)) throw new SwarmProtocolError('bitfield length does not match its leaf count')
      const head = new Uint8Array(2 + varint.encodingLength(msg.leaves))
      head[0] = T_BITFIELD
      head[1] = STATUS.indexOf(msg.status)
      varint.encode(msg.leaves, head, 2)
      return new Uint8ArrayList(head, msg.bits)
    }
  }
}

function readVarint (bytes: Uint8Array, offset: number, max: number, what: string): { value: number, next: number } {
  let value: number
  try {
    value = varint.decode(bytes, offset)
  } catch {
    throw new SwarmProtocolError(`malformed ${what}`)
  }
  if (!Number.isSafeInteger(value) || value > max) throw new SwarmProtocolError(`${what} ${value} is over ${max}`)
  const next = offset + varint.encodingLength(value)
  // One message, one encoding: a varint padded with continuation bytes is refused.
  if (bytes[next - 1] >= 0x80) throw new SwarmProtocolError(`non-minimal ${what}`)
  return { value, next }
}

function readCid (bytes: Uint8Array): { cid: CID, next: number } {
  const { value: len, next } = readVarint(bytes, 1, 128, 'CID length')
  if (next + len > bytes.length) throw new SwarmProtocolError('truncated CID')
  let cid: CID
  try {
    cid = decodeCid(bytes.subarray(next, next + len))
  } catch {
    throw new SwarmProtocolError('malformed CID')
  }
  if (cid.bytes.length !== len) throw new SwarmProtocolError('non-canonical CID')
  return { cid, next: next + len }
}

function only (bytes: Uint8Array, next: number, what: string): void {
  if (next !== bytes.length) throw new SwarmProtocolError(`trailing bytes after ${what}`)
}

/** Decodes one frame; SwarmProtocolError for anything malformed. */
export function decodeMessage (bytes: Uint8Array): SwarmMessage {
  if (bytes.length === 0) throw new SwarmProtocolError('empty frame')
  if (bytes.length > MAX_FRAME_BYTES) throw new SwarmProtocolError(`frame of ${bytes.length} bytes is over ${MAX_FRAME_BYTES}`)
  switch (bytes[0]) {
    case T_OPEN: { const { cid, next } = readCid(bytes); only(bytes, next, 'OPEN'); return { type: 'open', root: cid } }
    case T_WANT: { const { cid, next } = readCid(bytes); only(bytes, next, 'WANT'); return { type: 'want', cid } }
    case T_DONT_HAVE: { const { cid, next } = readCid(bytes); only(bytes, next, 'DONT_HAVE'); return { type: 'dont-have', cid } }
    case T_CANCEL: { const { cid, next } = readCid(bytes); only(bytes, next, 'CANCEL'); return { type: 'cancel', cid } }
    case T_BLOCK: {
      const { cid, next } = readCid(bytes)
      const data = bytes.subarray(next)
      if (data.length > MAX_BLOCK_BYTES) throw new SwarmProtocolError(`block of ${data.length} bytes is over ${MAX_BLOCK_BYTES}`)
      return { type: 'block', cid, bytes: data }
    }
    case T_HAVE: {
      const { value, next } = readVarint(bytes, 1, MAX_BITFIELD_LEAVES - 1, 'leaf index')
      only(bytes, next, 'HAVE')
      return { type: 'have', index: value }
    }
    case T_BITFIELD: {
      if (bytes.length < 3) throw new SwarmProtocolError('truncated BITFIELD')
      const status = STATUS[bytes[1]]
      if (status == null) throw new SwarmProtocolError(`unknown holder status ${bytes[1]}`)
      const { value: leaves, next } = readVarint(bytes, 2, MAX_BITFIELD_LEAVES, 'leaf count')
      const bits = bytes.subarray(next)
      if (bits.length !== bitfieldBytes(leaves)) throw new SwarmProtocolError('bitfield length does not match its leaf count')
      return { type: 'bitfield', status, leaves, bits }
    }
    default:
      throw new SwarmProtocolError(`unknown message type ${bytes[0]}`)
  }
}
