/**
 * Signed records: every record that leaves a peer is an envelope over a canonical DAG-CBOR
 * encoding, signed by its author's Ed25519 key. The CID of the envelope's bytes is the record's id,
 * so any IPLD tool can name and check it.
 *
 * Envelope: { v: 1, type, author: did:key, payload, sig }. The signature covers a domain tag
 * followed by the DAG-CBOR encoding of { v, type, author, payload } (map keys in canonical order).
 * Decoding rejects any encoding that is not the canonical one, so a record has exactly one id.
 */
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { create as createDigest } from 'multiformats/hashes/digest'
import { sha256 as sha256Digest } from './hash.ts'
import { didFromPublicKey, publicKeyFromDid } from './did.ts'
import { ed25519Sign, ed25519Verify, type Ed25519Key } from './ed25519.ts'
import { decodeFlatRecord } from './flat-record.ts'
import {
  InvalidDidError, InvalidSignatureError, MalformedRecordError, NonCanonicalEncodingError,
  RecordTooLargeError, UnexpectedRecordTypeError
} from './errors.ts'

export const RECORD_VERSION = 1
/** Default ceiling on an encoded record; protocols pass a smaller one where they can. */
export const MAX_RECORD_BYTES = 256 * 1024
/** Longest record type name. */
export const MAX_RECORD_TYPE_LENGTH = 64
const SIGNING_DOMAIN = new TextEncoder().encode('peerverse/record/v1\n')

export interface SignedRecord<P = unknown> {
  v: number
  type: string
  author: string
  payload: P
  sig: Uint8Array
}

export interface VerifiedRecord<P = unknown> {
  record: SignedRecord<P>
  bytes: Uint8Array
  cid: CID
}

export interface VerifyOptions {
  /** Reject records larger than this many bytes (default MAX_RECORD_BYTES). */
  maxBytes?: number
  /** Reject records of any other type. */
  type?: string
}

function signingBytes (v: number, type: string, author: string, payload: unknown): Uint8Array {
  const body = dagCbor.encode({ v, type, author, payload })
  const out = new Uint8Array(SIGNING_DOMAIN.length + body.length)
  out.set(SIGNING_DOMAIN)
  out.set(body, SIGNING_DOMAIN.length)
  return out
}

function checkType (type: unknown): asserts type is string {
  if (typeof type !== 'string' || type.length === 0 || type.length > MAX_RECORD_TYPE_LENGTH) {
    throw new MalformedRecordError(`record type must be a string of 1..${MAX_RECORD_TYPE_LENGTH} characters`)
  }
}

/** The CID (v1, dag-cbor, sha2-256) of encoded record bytes. */
export async function recordCid (bytes: Uint8Array): Promise<CID> {
  return CID.createV1(dagCbor.code, await sha256.digest(bytes))
}

/** Signs a payload as `type` by `key`'s owner; returns the record, its bytes and its CID. */
export async function signRecord<P> (key: Ed25519Key, type: string, payload: P): Promise<VerifiedRecord<P>> {
  checkType(type)
  const author = didFromPublicKey(key.publicKey)
  let toSign: Uint8Array
  try {
    toSign = signingBytes(RECORD_VERSION, type, author, payload)
  } catch (err) {
    throw new MalformedRecordError(`payload cannot be encoded as DAG-CBOR: ${(err as Error).message}`)
  }
  const record: SignedRecord<P> = { v: RECORD_VERSION, type, author, payload, sig: ed25519Sign(key, toSign) }
  const bytes = dagCbor.encode(record)
  if (bytes.length > MAX_RECORD_BYTES) throw new RecordTooLargeError(`record is ${bytes.length} bytes, over ${MAX_RECORD_BYTES}`)
  return { record, bytes, cid: await recordCid(bytes) }
}

/**
 * Decodes and verifies record bytes from anywhere (a peer, the disk, a user).
 * Throws RecordTooLargeError, MalformedRecordError, NonCanonicalEncodingError, InvalidDidError,
 * UnexpectedRecordTypeError or InvalidSignatureError.
 */
export async function verifyRecord<P = unknown> (bytes: Uint8Array, options: VerifyOptions = {}): Promise<VerifiedRecord<P>> {
  return verifyRecordSync<P>(bytes, options)
}

/** The CID of encoded record bytes, computed synchronously (for pure, synchronous rules). */
export function recordCidSync (bytes: Uint8Array): CID {
  return CID.createV1(dagCbor.code, createDigest(sha256.code, sha256Digest(bytes)))
}

const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567'
/** The binary prefix of a CIDv1 of DAG-CBOR with a SHA-256 multihash: version, codec, hash code, length. */
const CID_PREFIX = [0x01, dagCbor.code, sha256.code, 32]

/**
 * The string form of a record's CID (base32, as `CID.toString()` gives it) from the SHA-256 of its
 * bytes: ids of transactions are made for every transaction on every node, and the library's
 * generic base32 encoder was most of the cost.
 */
export function recordCidString (digest: Uint8Array): string {
  if (digest.length !== 32) throw new RangeError('a SHA-256 digest is 32 bytes')
  let out = 'b'
  let buffer = 0
  let bits = 0
  for (let i = 0; i < 36; i++) {
    buffer = ((buffer << 8) | (i < 4 ? CID_PREFIX[i] : digest[i - 4])) & 0xfff
    bits += 8
    while (bits >= 5) {
      bits -= 5
      out += BASE32[(buffer >> bits) & 31]
    }
  }
  if (bits > 0) out += BASE32[(buffer << (5 - bits)) & 31]
  return out
}

/** recordCidSync(bytes).toString(), faster. */
export function recordId (bytes: Uint8Array): string {
  return recordCidString(sha256Digest(bytes))
}

/** A record that passed every check but the signature (readRecordSync); checkRecordSignature completes them. */
export interface ReadRecord<P = unknown> extends VerifiedRecord<P> {
  publicKey: Uint8Array
}

/** verifyRecord, synchronously: the same checks, for pure state transitions. */
export function verifyRecordSync<P = unknown> (bytes: Uint8Array, options: VerifyOptions = {}): VerifiedRecord<P> {
  const read = readRecordSync<P>(bytes, options)
  checkRecordSignature(read)
  return { record: read.record, bytes: read.bytes, cid: read.cid }
}

/**
 * Every check of verifyRecordSync except the signature, the one that costs: callers that can
 * refuse a record on cheap grounds (a mempool's limits, say) do so before paying for it. The
 * result is not to be trusted until checkRecordSignature passes.
 */
export function readRecordSync<P = unknown> (bytes: Uint8Array, options: VerifyOptions = {}): ReadRecord<P> {
  const maxBytes = options.maxBytes ?? MAX_RECORD_BYTES
  if (!(bytes instanceof Uint8Array)) throw new MalformedRecordError('record must be bytes')
  if (bytes.length > maxBytes) throw new RecordTooLargeError(`record is ${bytes.length} bytes, over ${maxBytes}`)
  // Flat records (most of them) are read straight from canonical bytes; the rest are decoded
  // in general and proven canonical by encoding them again.
  let decoded: unknown = decodeFlatRecord(bytes)
  const canonicalKnown = decoded !== undefined
  if (!canonicalKnown) {
    try {
      decoded = dagCbor.decode(bytes)
    } catch (err) {
      throw new MalformedRecordError(`not DAG-CBOR: ${(err as Error).message}`)
    }
  }
  if (decoded == null || typeof decoded !== 'object' || Array.isArray(decoded)) {
    throw new MalformedRecordError('record must be a map')
  }
  const { v, type, author, payload, sig } = decoded as Record<string, unknown>
  const keys = Object.keys(decoded)
  if (keys.length !== 5 || !('payload' in decoded)) throw new MalformedRecordError('record must have exactly v, type, author, payload and sig')
  if (v !== RECORD_VERSION) throw new MalformedRecordError(`unsupported record version ${String(v)}`)
  checkType(type)
  if (!(sig instanceof Uint8Array)) throw new MalformedRecordError('sig must be bytes')
  if (options.type != null && type !== options.type) {
    throw new UnexpectedRecordTypeError(`expected a ${options.type} record, got ${type}`)
  }
  if (!canonicalKnown && !equalBytes(dagCbor.encode(decoded), bytes)) throw new NonCanonicalEncodingError('record is not canonically encoded')
  let publicKey: Uint8Array
  try {
    publicKey = publicKeyFromDid(author)
  } catch (err) {
    throw new InvalidDidError(`record author: ${(err as Error).message}`)
  }
  return { record: decoded as SignedRecord<P>, bytes, cid: recordCidSync(bytes), publicKey }
}

/** The signature check readRecordSync leaves out: InvalidSignatureError unless the author signed it. */
export function checkRecordSignature (read: ReadRecord): void {
  if (!ed25519Verify(read.publicKey, signedPart(read.bytes, read.record.sig.length), read.record.sig)) {
    throw new InvalidSignatureError(`signature does not match author ${String(read.record.author)}`)
  }
}

/**
 * The signed message of canonical record bytes, cut from them rather than encoded again: the
 * envelope is the map { v, sig, type, author, payload } in canonical key order, and the signed body
 * is the same map without `sig`: header 0xa4, the `v` entry, then everything after the signature.
 * Only for bytes already checked to be the canonical encoding of a version-1 record.
 */
function signedPart (bytes: Uint8Array, sigLength: number): Uint8Array {
  // 0xa5 | 0x61 'v' | 0x01 | 0x63 'sig' | byte-string header | signature
  const sigHeader = sigLength < 24 ? 1 : sigLength < 0x100 ? 2 : sigLength < 0x10000 ? 3 : 5
  const rest = 8 + sigHeader + sigLength
  const out = new Uint8Array(SIGNING_DOMAIN.length + 4 + bytes.length - rest)
  out.set(SIGNING_DOMAIN)
  out[SIGNING_DOMAIN.length] = 0xa4
  out.set(bytes.subarray(1, 4), SIGNING_DOMAIN.length + 1)
  out.set(bytes.subarray(rest), SIGNING_DOMAIN.length + 4)
  return out
}

function equalBytes (a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}
