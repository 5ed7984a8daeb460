/**
 * The wire format of Bitswap (`/ipfs/bitswap/1.2.0` and 1.1.0), pure encode and
 * decode, written from the Bitswap specification's protobuf schema:
 *
 *   Message { Wantlist wantlist = 1; repeated bytes blocks = 2 (1.0.0); repeated Block payload = 3;
 *             repeated BlockPresence blockPresences = 4; int32 pendingBytes = 5 }
 *   Wantlist { repeated Entry entries = 1; bool full = 2 }
 *   Entry { bytes block = 1 (a CID); int32 priority = 2; bool cancel = 3; WantType wantType = 4
 *           (0 Block, 1 Have); bool sendDontHave = 5 }
 *   Block { bytes prefix = 1 (CID version, codec, multihash code and length); bytes data = 2 }
 *   BlockPresence { bytes cid = 1; Type type = 2 (0 Have, 1 DontHave) }
 *
 * Each message is one varint length-prefixed frame; a stream carries messages one way only (a
 * peer answers on a stream of its own). A block's CID is not sent: the receiver builds it from the
 * prefix and the hash of the data (blockCid), so bytes can only ever "match" the CID they hash to;
 * a peer lies by sending blocks no one asked it for.
 */
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import * as Digest from 'multiformats/hashes/digest'
import * as varint from 'uint8-varint'

export const BITSWAP_120 = '/ipfs/bitswap/1.2.0'
export const BITSWAP_110 = '/ipfs/bitswap/1.1.0'
/** The ids we answer on, newest first (1.0.0's blocks field is read too, but 1.0.0 is not spoken). */
export const BITSWAP_PROTOCOLS = [BITSWAP_120, BITSWAP_110] as const

const DAG_PB = 0x70

/** A Bitswap message that does not parse, or names what it may not. */
export class BitswapProtocolError extends Error {
  name = 'BitswapProtocolError'
}

export type WantType = 'block' | 'have'

export interface WantEntry {
  cid: CID
  priority: number
  cancel: boolean
  wantType: WantType
  sendDontHave: boolean
}

export interface WireBlock {
  /** The CID prefix (version, codec, multihash code and digest length). */
  prefix: Uint8Array
  data: Uint8Array
}

export interface Presence {
  cid: CID
  have: boolean
}

export interface BitswapMessage {
  wantlist?: { entries: WantEntry[], full: boolean }
  blocks: WireBlock[]
  presences: Presence[]
  pendingBytes?: number
}

// ---------------------------------------------------------------------------------------------
// encode

class Writer {
  private readonly parts: Uint8Array[] = []
  length = 0

  private push (bytes: Uint8Array): void { this.parts.push(bytes); this.length += bytes.length }
  uint (n: number): void { this.push(varint.encode(n)) }
  tag (field: number, wire: number): void { this.uint(field * 8 + wire) }
  varintField (field: number, n: number): void { if (n !== 0) { this.tag(field, 0); this.uint(n) } }
  bytesField (field: number, bytes: Uint8Array): void { this.tag(field, 2); this.uint(bytes.length); this.push(bytes) }
  finish (): Uint8Array {
    const out = new Uint8Array(this.length)
    let o = 0
    for (const p of this.parts) { out.set(p, o); o += p.length }
    return out
  }
}

/** The prefix of a CID, as a Block carries it. */
export function cidPrefix (cid: CID): Uint8Array {
  const w = new Writer()
  w.uint(cid.version)
  w.uint(cid.code)
  w.uint(cid.multihash.code)
  w.uint(cid.multihash.size)
  return w.finish()
}

export function encodeBitswap (msg: Partial<BitswapMessage>): Uint8Array {
  const w = new Writer()
  if (msg.wantlist != null) {
    const wl = new Writer()
    for (const e of msg.wantlist.entries) {
      const ew = new Writer()
      ew.bytesField(1, e.cid.bytes)
      ew.varintField(2, Math.max(0, Math.min(0x7fffffff, Math.floor(e.priority))))
      ew.varintField(3, e.cancel ? 1 : 0)
      ew.varintField(4, e.wantType === 'have' ? 1 : 0)
      ew.varintField(5, e.sendDontHave ? 1 : 0)
      wl.bytesField(1, ew.finish())
    }
    wl.varintField(2, msg.wantlist.full ? 1 : 0)
    w.bytesField(1, wl.finish())
  }
  for (const b of msg.blocks ?? []) {
    const bw = new Writer()
    bw.bytesField(1, b.prefix)
    bw.bytesField(2, b.data)
    w.bytesField(3, bw.finish())
  }
  for (const p of msg.presences ?? []) {
    const pw = new Writer()
    pw.bytesField(1, p.cid.bytes)
    pw.varintField(2, p.have ? 0 : 1)
    w.bytesField(4, pw.finish())
  }
  if (msg.pendingBytes != null) w.varintField(5, msg.pendingBytes)
  return w.finish()
}

/** Bytes a block adds to an encoded message (its Block entry and field header), for packing messages. */
export function blockOverhead (prefix: Uint8Array, dataBytes: number): number {
  return prefix.length + dataBytes + 24
}

// ---------------------------------------------------------------------------------------------
// decode

class Reader {
  private pos = 0
  private readonly buf: Uint8Array
  constructor (buf: Uint8Array) { this.buf = buf }
  get done (): boolean { return this.pos >= this.buf.length }

  uint (): number {
    let n = 0
    let mul = 1
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.buf.length) throw new BitswapProtocolError('truncated varint')
      const b = this.buf[this.pos++]
      // int32 fields may be negative (ten bytes): only the low 32 bits count.
      if (i < 5) n += (b & 0x7f) * mul
      mul *= 128
      if ((b & 0x80) === 0) return i < 5 ? n : n % 0x100000000
    }
    throw new BitswapProtocolError('varint too long')
  }

  bytes (): Uint8Array {
    const len = this.uint()
    if (len > this.buf.length - this.pos) throw new BitswapProtocolError('truncated field')
    const out = this.buf.subarray(this.pos, this.pos + len)
    this.pos += len
    return out
  }

  /** Reads a field's tag: [field number, wire type]. */
  tag (): [number, number] {
    const t = this.uint()
    return [Math.floor(t / 8), t & 7]
  }

  skip (wire: number): void {
    if (wire === 0) this.uint()
    else if (wire === 2) this.bytes()
    else if (wire === 1 || wire === 5) {
      const n = wire === 1 ? 8 : 4
      if (n > this.buf.length - this.pos) throw new BitswapProtocolError('truncated field')
      this.pos += n
    } else throw new BitswapProtocolError(`wire type ${wire}`)
  }
}

function fields (buf: Uint8Array, each: (field: number, wire: number, r: Reader) => boolean): void {
  const r = new Reader(buf)
  while (!r.done) {
    const [field, wire] = r.tag()
    if (!each(field, wire, r)) r.skip(wire)
  }
}

function decodeCid (bytes: Uint8Array): CID {
  try {
    return CID.decode(bytes)
  } catch (err) {
    throw new BitswapProtocolError(`bad CID: ${(err as Error).message}`)
  }
}

function decodeEntry (buf: Uint8Array): WantEntry {
  let cid: CID | undefined
  const e: WantEntry = { cid: undefined as unknown as CID, priority: 1, cancel: false, wantType: 'block', sendDontHave: false }
  fields(buf, (field, wire, r) => {
    if (field === 1 && wire === 2) { cid = decodeCid(r.bytes()); return true }
    if (wire !== 0) return false
    if (field === 2) e.priority = r.uint() | 0
    else if (field === 3) e.cancel = r.uint() !== 0
    else if (field === 4) e.wantType = r.uint() === 1 ? 'have' : 'block'
    else if (field === 5) e.sendDontHave = r.uint() !== 0
    else return false
    return true
  })
  if (cid == null) throw new BitswapProtocolError('wantlist entry without a CID')
  e.cid = cid
  return e
}

/** Decodes one message; `maxEntries` bounds the wantlist entries it may carry. */
export function decodeBitswap (buf: Uint8Array, maxEntries = Infinity): BitswapMessage {
  const msg: BitswapMessage = { blocks: [], presences: [] }
  try {
    fields(buf, (field, wire, r) => {
      if (field === 1 && wire === 2) {
        const wl = { entries: [] as WantEntry[], full: false }
        fields(r.bytes(), (f, w, rr) => {
          if (f === 1 && w === 2) {
            if (wl.entries.length >= maxEntries) throw new BitswapProtocolError(`more than ${maxEntries} wantlist entries in one message`)
            wl.entries.push(decodeEntry(rr.bytes()))
            return true
          }
          if (f === 2 && w === 0) { wl.full = rr.uint() !== 0; return true }
          return false
        })
        msg.wantlist = wl
        return true
      }
      if (field === 2 && wire === 2) {
        // Bitswap 1.0.0: the bytes alone, named by a CIDv0 (dag-pb, sha2-256).
        msg.blocks.push({ prefix: V0_PREFIX, data: r.bytes() })
        return true
      }
      if (field === 3 && wire === 2) {
        let prefix: Uint8Array | undefined
        let data: Uint8Array | undefined
        fields(r.bytes(), (f, w, rr) => {
          if (f === 1 && w === 2) { prefix = rr.bytes(); return true }
          if (f === 2 && w === 2) { data = rr.bytes(); return true }
          return false
        })
        if (prefix == null) throw new BitswapProtocolError('block without a prefix')
        msg.blocks.push({ prefix, data: data ?? new Uint8Array(0) })
        return true
      }
      if (field === 4 && wire === 2) {
        let cid: CID | undefined
        let have = true
        fields(r.bytes(), (f, w, rr) => {
          if (f === 1 && w === 2) { cid = decodeCid(rr.bytes()); return true }
          if (f === 2 && w === 0) { have = rr.uint() === 0; return true }
          return false
        })
        if (cid == null) throw new BitswapProtocolError('block presence without a CID')
        msg.presences.push({ cid, have })
        return true
      }
      if (field === 5 && wire === 0) { msg.pendingBytes = r.uint(); return true }
      return false
    })
  } catch (err) {
    if (err instanceof BitswapProtocolError) throw err
    throw new BitswapProtocolError((err as Error).message)
  }
  return msg
}

const V0_PREFIX = new Uint8Array([0, DAG_PB, sha256.code, 32])

/**
 * The CID a block's bytes hash to under its prefix. Only sha2-256 blocks are taken (what every
 * block we ask for is named by); version 0 must be dag-pb.
 */
export async function blockCid (block: WireBlock): Promise<CID> {
  const r = new Reader(block.prefix)
  let version: number, codec: number, hashCode: number, hashLength: number
  try {
    version = r.uint()
    codec = r.uint()
    hashCode = r.uint()
    hashLength = r.uint()
  } catch {
    throw new BitswapProtocolError('bad block prefix')
  }
  if (hashCode !== sha256.code || hashLength !== 32) throw new BitswapProtocolError(`block hash 0x${hashCode.toString(16)}/${hashLength} is not sha2-256`)
  if (version !== 0 && version !== 1) throw new BitswapProtocolError(`CID version ${version}`)
  if (version === 0 && codec !== DAG_PB) throw new BitswapProtocolError('CIDv0 block that is not dag-pb')
  const digest = await sha256.digest(block.data)
  return version === 0 ? CID.createV0(Digest.create(sha256.code, digest.digest) as never) : CID.createV1(codec, digest)
}
