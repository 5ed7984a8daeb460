/**
 * Ledger transactions: signed records (src/identity/record.ts) of type `peerverse/tx`, so a
 * transaction's id is its CID and its sender is the did:key that signed it. The payload carries the
 * chain id, the sender's next nonce and a fee, then one operation. Decoding is synchronous and
 * pure, so the state transition can check transactions itself. Amounts are integers in the
 * smallest unit, carried as bigint: never floating point.
 */
import { CID } from 'multiformats/cid'
import { isDid } from '../identity/did.ts'
import type { Ed25519Key } from '../identity/ed25519.ts'
import { checkRecordSignature, readRecordSync, recordCidString, recordId, signRecord } from '../identity/record.ts'
import { checkSpaceRecordSignature, MAX_LAND_PRICE, readSpaceRecord } from './land.ts'

export const TX_TYPE = 'peerverse/tx'
/** Largest encoded transaction. */
export const MAX_TX_BYTES = 4 * 1024
/** Smallest fee a transaction may carry. */
export const MIN_FEE = 1n
/** Largest amount, fee or balance (2^63 - 1: fits DAG-CBOR's integers). */
export const MAX_AMOUNT = (1n << 63n) - 1n
/** Longest asset name and space id. */
export const MAX_NAME_LENGTH = 128
/** Parcel coordinates and sides are within [0, MAX_GRID) of a space's grid. */
export const MAX_GRID = 1 << 20
/** Largest parcel side, in grid cells. */
export const MAX_PARCEL_SIDE = 1024
/**
 * Verified transactions a VerifiedTxCache remembers: twice a full mempool (MAX_MEMPOOL_TXS), so
 * every waiting transaction and a block's worth in flight stay verified.
 */
export const MAX_VERIFIED_TXS = 40_000

export type TxKind = 'transfer' | 'mint' | 'asset-transfer' | 'claim' | 'parcel-transfer' | 'stake' | 'unstake' | 'land-grant' | 'land-revoke' | 'land-price'

export interface TxBase { chain: string, nonce: number, fee: bigint }
export type TxOp =
  | { kind: 'transfer', to: string, amount: bigint }
  | { kind: 'mint', content: CID, name: string }
  | { kind: 'asset-transfer', asset: string, to: string }
  | { kind: 'claim', space: string, x: number, y: number, w: number, h: number, record?: Uint8Array, maxPrice?: bigint }
  | { kind: 'parcel-transfer', parcel: string, to: string }
  | { kind: 'stake', amount: bigint }
  | { kind: 'unstake', amount: bigint }
  | { kind: 'land-grant', space: string, to: string, x: number, y: number, w: number, h: number, record?: Uint8Array }
  | { kind: 'land-revoke', grant: string }
  | { kind: 'land-price', space: string, price: bigint, record?: Uint8Array }
export type TxPayload = TxBase & TxOp

/** A decoded, signature-checked transaction. */
export interface Tx {
  id: string
  sender: string
  bytes: Uint8Array
  payload: TxPayload
}

export class MalformedTxError extends Error {
  name = 'MalformedTxError'
}

export class WrongChainError extends Error {
  name = 'WrongChainError'
}

function int (value: unknown, field: string, min: bigint, max: bigint): bigint {
  if (typeof value !== 'number' && typeof value !== 'bigint') throw new MalformedTxError(`${field} must be an integer`)
  if (typeof value === 'number' && !Number.isSafeInteger(value)) throw new MalformedTxError(`${field} must be an integer`)
  const v = BigInt(value)
  if (v < min || v > max) throw new MalformedTxError(`${field} must be within ${min}..${max}`)
  return v
}

function small (value: unknown, field: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) throw new MalformedTxError(`${field} must be an integer within ${min}..${max}`)
  return value
}

function did (value: unknown, field: string): string {
  if (typeof value !== 'string' || !isDid(value)) throw new MalformedTxError(`${field} must be a did:key`)
  return value
}

function str (value: unknown, field: string, max: number): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > max) throw new MalformedTxError(`${field} must be a string of 1..${max} characters`)
  return value
}

const FIELDS: Record<TxKind, string[]> = {
  transfer: ['to', 'amount'],
  mint: ['content', 'name'],
  'asset-transfer': ['asset', 'to'],
  claim: ['space', 'x', 'y', 'w', 'h'],
  'parcel-transfer': ['parcel', 'to'],
  stake: ['amount'],
  unstake: ['amount'],
  'land-grant': ['space', 'to', 'x', 'y', 'w', 'h'],
  'land-revoke': ['grant'],
  'land-price': ['space', 'price']
}
/** Fields a kind may leave out: the space's signed record, which the first land transaction of a space carries (land.ts). */
const OPTIONAL: Partial<Record<TxKind, string[]>> = { claim: ['record', 'maxPrice'], 'land-grant': ['record'], 'land-price': ['record'] }

/** A rectangle of the grid: within [0, MAX_GRID), sides 1..MAX_PARCEL_SIDE. */
function rect (p: Record<string, unknown>): { x: number, y: number, w: number, h: number } {
  const r = { x: small(p.x, 'x', 0, MAX_GRID - 1), y: small(p.y, 'y', 0, MAX_GRID - 1), w: small(p.w, 'w', 1, MAX_PARCEL_SIDE), h: small(p.h, 'h', 1, MAX_PARCEL_SIDE) }
  if (r.x + r.w > MAX_GRID || r.y + r.h > MAX_GRID) throw new MalformedTxError(`a parcel must lie within the ${MAX_GRID}-cell grid`)
  return r
}

/** The space record a land transaction carries, if any: checked but for its signature (decodeTx checks that). */
function record (p: Record<string, unknown>, space: string): { record?: Uint8Array } {
  if (p.record === undefined) return {}
  if (!(p.record instanceof Uint8Array)) throw new MalformedTxError('record must be bytes')
  readSpaceRecord(p.record, space)
  return { record: p.record }
}

/** Checks and normalizes a payload (numbers to bigint where amounts); MalformedTxError otherwise. */
export function parsePayload (value: unknown): TxPayload {
  if (value == null || typeof value !== 'object' || Array.isArray(value)) throw new MalformedTxError('payload must be a map')
  const p = value as Record<string, unknown>
  const kind = p.kind as TxKind
  if (typeof kind !== 'string' || !Object.hasOwn(FIELDS, kind)) throw new MalformedTxError(`unknown transaction kind ${String(p.kind)}`)
  const allowed = new Set(['chain', 'nonce', 'fee', 'kind', ...FIELDS[kind], ...(OPTIONAL[kind] ?? [])])
  for (const key of Object.keys(p)) if (!allowed.has(key)) throw new MalformedTxError(`unknown field ${key} in a ${kind}`)
  const base: TxBase = {
    chain: str(p.chain, 'chain', MAX_NAME_LENGTH),
    nonce: small(p.nonce, 'nonce', 0, Number.MAX_SAFE_INTEGER),
    fee: int(p.fee, 'fee', MIN_FEE, MAX_AMOUNT)
  }
  switch (kind) {
    case 'transfer': return { ...base, kind, to: did(p.to, 'to'), amount: int(p.amount, 'amount', 1n, MAX_AMOUNT) }
    case 'mint': {
      const content = CID.asCID(p.content)
      if (content == null) throw new MalformedTxError('content must be a CID')
      return { ...base, kind, content, name: str(p.name, 'name', MAX_NAME_LENGTH) }
    }
    case 'asset-transfer': return { ...base, kind, asset: str(p.asset, 'asset', 128), to: did(p.to, 'to') }
    case 'claim': {
      const space = str(p.space, 'space', MAX_NAME_LENGTH)
      // The most a claim at the owner's price pays per cell, so a price raised meanwhile cannot take more (none: 0, land.ts).
      const maxPrice = p.maxPrice === undefined ? {} : { maxPrice: int(p.maxPrice, 'maxPrice', 0n, MAX_LAND_PRICE) }
      return { ...base, kind, space, ...rect(p), ...record(p, space), ...maxPrice }
    }
    case 'land-grant': {
      const space = str(p.space, 'space', MAX_NAME_LENGTH)
      return { ...base, kind, space, to: did(p.to, 'to'), ...rect(p), ...record(p, space) }
    }
    case 'land-revoke': return { ...base, kind, grant: str(p.grant, 'grant', 128) }
    case 'land-price': {
      const space = str(p.space, 'space', MAX_NAME_LENGTH)
      return { ...base, kind, space, price: int(p.price, 'price', 0n, MAX_LAND_PRICE), ...record(p, space) }
    }
    case 'parcel-transfer': return { ...base, kind, parcel: str(p.parcel, 'parcel', 128), to: did(p.to, 'to') }
    case 'stake':
    case 'unstake': return { ...base, kind, amount: int(p.amount, 'amount', 1n, MAX_AMOUNT) }
  }
}

/**
 * Decodes and verifies a transaction's bytes, synchronously; named errors for anything wrong.
 * `precheck`, given, sees the decoded transaction before its signature is checked and may refuse it
 * by throwing (a mempool's cheap rules: nonce, limits, fee): a refusal then costs no signature check.
 */
export function decodeTx (bytes: Uint8Array, chain?: string, precheck?: (tx: Tx) => void): Tx {
  const read = readRecordSync(bytes, { maxBytes: MAX_TX_BYTES, type: TX_TYPE })
  const payload = parsePayload(read.record.payload)
  if (chain != null && payload.chain !== chain) throw new WrongChainError(`transaction is for chain ${payload.chain}, not ${chain}`)
  const tx = { id: recordCidString(read.cid.multihash.digest), sender: read.record.author, bytes, payload }
  precheck?.(tx)
  checkRecordSignature(read)
  // A space record is checked like the transaction's own signature: a forged one makes the
  // transaction invalid, never a block's.
  if ('record' in payload && payload.record != null) checkSpaceRecordSignature(payload.record)
  return tx
}

/** Signs a transaction. */
export async function signTx (key: Ed25519Key, payload: TxPayload): Promise<Tx> {
  const normalized = parsePayload(payload)
  if ('record' in normalized && normalized.record != null) checkSpaceRecordSignature(normalized.record)
  const signed = await signRecord(key, TX_TYPE, normalized)
  if (signed.bytes.length > MAX_TX_BYTES) throw new MalformedTxError(`transaction is ${signed.bytes.length} bytes, over ${MAX_TX_BYTES}`)
  return { id: signed.cid.toString(), sender: signed.record.author, bytes: signed.bytes, payload: normalized }
}

/** Decodes and verifies transaction bytes for a chain (decodeTx's contract, precheck included). */
export type TxDecoder = (bytes: Uint8Array, chain?: string, precheck?: (tx: Tx) => void) => Tx

/**
 * A bounded memo of decodeTx: each distinct transaction's signature is checked once and the
 * decoded result reused by the mempool, the proposal check and the commit (CometBFT's mempool
 * cache, which likewise keeps only transactions that passed). Keyed by the SHA-256 of the exact
 * bytes, and a hit compares the bytes too, so only bytes that verified here ever skip the check.
 * Failures are not kept. Least recently used entries go first beyond `max`.
 */
export class VerifiedTxCache {
  private readonly entries = new Map<string, Tx>()
  private readonly committedIds = new Set<string>()
  /** Entries kept at most. */
  readonly max: number
  /** Lookups answered without verifying, and verifications done (for tests and profiling). */
  hits = 0
  misses = 0

  constructor (max = MAX_VERIFIED_TXS) {
    if (!Number.isSafeInteger(max) || max < 1) throw new RangeError('max must be a positive integer')
    this.max = max
  }

  get size (): number { return this.entries.size }

  /** decodeTx, verifying only bytes not seen (and verified) before. */
  readonly decode: TxDecoder = (bytes, chain, precheck) => {
    if (!(bytes instanceof Uint8Array)) return decodeTx(bytes, chain, precheck)
    // Keyed by the transaction's id (the CID of its bytes), so a committed one can be forgotten by id.
    const key = recordId(bytes)
    const cached = this.entries.get(key)
    if (cached != null && Buffer.compare(cached.bytes, bytes) === 0) {
      this.hits++
      this.entries.delete(key)
      this.entries.set(key, cached)
      if (chain != null && cached.payload.chain !== chain) throw new WrongChainError(`transaction is for chain ${cached.payload.chain}, not ${chain}`)
      return cached
    }
    // Counted just before the signature check: a transaction the precheck refuses costs none.
    const tx = decodeTx(bytes, chain, t => { precheck?.(t); this.misses++ })
    this.entries.set(key, tx)
    if (this.entries.size > this.max) this.entries.delete(this.entries.keys().next().value as string)
    return tx
  }

  /**
   * Drops a transaction (once it is committed: its nonce is used, so any copy that comes later is
   * refused by the mempool's cheap rules before a signature check). Keeps the cache to what is
   * still pending, rather than the last MAX_VERIFIED_TXS transactions the node saw.
   */
  forget (id: string): void {
    this.entries.delete(id)
  }

  /**
   * Forgets a committed transaction and remembers its id (the last `max`), so a copy that comes
   * again is known for a committed one, its signature already checked, and refused as stale
   * without a second verification.
   */
  committed (id: string): void {
    this.entries.delete(id)
    this.committedIds.delete(id)
    this.committedIds.add(id)
    if (this.committedIds.size > this.max) this.committedIds.delete(this.committedIds.values().next().value as string)
  }

  /** Whether `id` was committed (one of the last `max` marked so). */
  readonly isCommitted = (id: string): boolean => this.committedIds.has(id)
}
