/**
 * Land rules: who may claim which cells of a space. Pure and synchronous, like the rest of the
 * state transition (state.ts calls these from its `execute`).
 *
 * How the ledger knows a space and its owner, with no network fetch inside consensus: a space's
 * id is the CID of its signed descriptor (a `peerverse/space` record), and that record names its
 * owner (its author). The first land transaction of a space (a claim, a grant or a price) carries
 * the record itself; every validator checks that the record's CID is the space id and that its
 * signature holds (at decode, beside the transaction's own signature, so a forged record makes
 * the transaction malformed and it never enters a block), and the state then records the owner
 * and the grid's extent under `space/<id>`. Later transactions need not carry it. We chose this
 * over a separate registration transaction so one claim is one transaction (one fee, one
 * signature from the claimant), and over a lookup in the space capability so the rules depend on
 * nothing but the block. The ledger reads only the record's envelope and the grid's width and
 * depth, with its own checks here rather than the space capability's: the rules of a chain must
 * not change when another module's validation does. The record goes on the chain as it is: for a
 * private space that makes its name, grid and owner public (never its members or keys).
 *
 * Who may claim: the owner anywhere in its space; anyone else inside a rectangle the owner granted
 * them (`land-grant`, revocable with `land-revoke`), or anywhere at the price per cell the owner
 * set (`land-price`), paid to the owner by the claim itself, in the same transaction, when the
 * claim names a `maxPrice` per cell at or above it (a claim naming none pays nothing). A claim in a
 * space the ledger cannot prove is refused with UnknownSpaceError; one with neither grant nor
 * price with NotGrantedError. Parcels lie within the space's grid (x along its width, y along its
 * depth, in the same metres).
 */
import * as dagCbor from '@ipld/dag-cbor'
import { checkRecordSignature, readRecordSync, recordId } from '../identity/record.ts'
import type { LedgerState } from './state.ts'

/** The record type of a space descriptor (the space capability's SPACE_TYPE; fixed here as a chain rule). */
export const SPACE_RECORD_TYPE = 'peerverse/space'
/** Largest space record a transaction may carry (a descriptor is a few hundred bytes). */
export const MAX_SPACE_RECORD_BYTES = 2048
/** Grants a space may hold at once (the owner revokes one to make room). */
export const MAX_GRANTS_PER_SPACE = 256
/** Highest price per cell an owner may set (times the largest parcel, well within MAX_AMOUNT). */
export const MAX_LAND_PRICE = 1n << 40n
/** Largest grid side the ledger accepts from a space record (the space capability's MAX_GRID_SIZE is smaller). */
export const MAX_SPACE_SIDE = 1 << 20

/** A space the ledger knows: its owner, its grid's extent, and its price per cell (0: not for sale). */
export interface LandSpace { id: string, owner: string, width: number, depth: number, price: bigint }
/** The owner's leave for `grantee` to claim within a rectangle of `space`. */
export interface Grant { id: string, space: string, grantee: string, x: number, y: number, w: number, h: number }

export class InvalidSpaceRecordError extends Error {
  name = 'InvalidSpaceRecordError'
}
export class UnknownSpaceError extends Error {
  name = 'UnknownSpaceError'
}
export class NotGrantedError extends Error {
  name = 'NotGrantedError'
}
export class NotSpaceOwnerError extends Error {
  name = 'NotSpaceOwnerError'
}
export class OutsideSpaceError extends Error {
  name = 'OutsideSpaceError'
}
export class TooManyGrantsError extends Error {
  name = 'TooManyGrantsError'
}
export class UnknownGrantError extends Error {
  name = 'UnknownGrantError'
}
export class PriceAboveLimitError extends Error {
  name = 'PriceAboveLimitError'
}

type Rect = { x: number, y: number, w: number, h: number }

function side (value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1 || value > MAX_SPACE_SIDE) throw new InvalidSpaceRecordError(`${what} must be an integer in 1..${MAX_SPACE_SIDE}`)
  return value
}

/**
 * Every check of a space record but its signature (cheap: for a transaction's decoding before its
 * own signature is checked): a `peerverse/space` record of at most MAX_SPACE_RECORD_BYTES whose
 * CID is `space`, with a grid. Returns the owner and extent; InvalidSpaceRecordError otherwise.
 */
export function readSpaceRecord (bytes: Uint8Array, space: string): { owner: string, width: number, depth: number } {
  if (!(bytes instanceof Uint8Array)) throw new InvalidSpaceRecordError('record must be bytes')
  if (bytes.length > MAX_SPACE_RECORD_BYTES) throw new InvalidSpaceRecordError(`space record is ${bytes.length} bytes, over ${MAX_SPACE_RECORD_BYTES}`)
  let read
  try {
    read = readRecordSync<{ grid?: { width?: unknown, depth?: unknown } }>(bytes, { type: SPACE_RECORD_TYPE, maxBytes: MAX_SPACE_RECORD_BYTES })
  } catch (err) {
    throw new InvalidSpaceRecordError(`not a space record: ${(err as Error).name}: ${(err as Error).message}`)
  }
  const id = recordId(bytes)
  if (id !== space) throw new InvalidSpaceRecordError(`the record is space ${id}, not ${space}`)
  const grid = read.record.payload?.grid
  if (grid == null || typeof grid !== 'object') throw new InvalidSpaceRecordError('the record has no grid')
  return { owner: read.record.author, width: side(grid.width, 'grid.width'), depth: side(grid.depth, 'grid.depth') }
}

/** Checks a space record's signature (after readSpaceRecord): InvalidSpaceRecordError if it does not hold. */
export function checkSpaceRecordSignature (bytes: Uint8Array): void {
  try {
    checkRecordSignature(readRecordSync(bytes, { type: SPACE_RECORD_TYPE, maxBytes: MAX_SPACE_RECORD_BYTES }))
  } catch (err) {
    throw new InvalidSpaceRecordError(`space record: ${(err as Error).name}: ${(err as Error).message}`)
  }
}

/**
 * The space a transaction acts in: known to the state, or proven by the record it carries (whose
 * signature decoding checked). Changes nothing: `registered` says whether to record it.
 */
export function spaceOf (s: LedgerState, space: string, record: Uint8Array | undefined): { space: LandSpace, registered: boolean } {
  const known = s.spaces.get(space)
  if (known != null) return { space: known, registered: false }
  if (record == null) throw new UnknownSpaceError(`the ledger knows no space ${space}: its first land transaction carries the space's signed record`)
  const r = readSpaceRecord(record, space)
  return { space: { id: space, owner: r.owner, width: r.width, depth: r.depth, price: 0n }, registered: true }
}

function within (sp: LandSpace, r: Rect): void {
  if (r.x + r.w > sp.width || r.y + r.h > sp.depth) throw new OutsideSpaceError(`${r.w}x${r.h} at ${r.x},${r.y} lies outside space ${sp.id} (${sp.width}x${sp.depth})`)
}

const contains = (outer: Rect, inner: Rect): boolean =>
  inner.x >= outer.x && inner.y >= outer.y && inner.x + inner.w <= outer.x + outer.w && inner.y + inner.h <= outer.y + outer.h

/**
 * The grants of each space, by grant id: an index of a state's `grants` map, built once per map
 * (a block's working state copies the map, so once a block) and kept up to date by grant and
 * revoke, the only writers of that map. So a claim or a grant looks at its own space's grants (at
 * most MAX_GRANTS_PER_SPACE), never at every space's.
 */
const grantIndex = new WeakMap<Map<string, Grant>, Map<string, Map<string, Grant>>>()

function grantsBySpace (s: LedgerState): Map<string, Map<string, Grant>> {
  let index = grantIndex.get(s.grants)
  if (index == null) {
    index = new Map()
    for (const [id, g] of s.grants) {
      const space = g.space
      let of = index.get(space)
      if (of == null) index.set(space, of = new Map())
      of.set(id, g)
    }
    grantIndex.set(s.grants, index)
  }
  return index
}

const grantsOf = (s: LedgerState, space: string): Iterable<Grant> => grantsBySpace(s).get(space)?.values() ?? []

/**
 * Whether `sender` may claim `r` in `sp`, and what it pays the owner: 0 in its own space or inside
 * one of its grants, else the owner's price per cell times the cells. NotGrantedError when none
 * applies, OutsideSpaceError off the grid, PriceAboveLimitError when the price per cell is over
 * the claim's `maxPrice` (the owner raised it after the claimant looked; none named: 0).
 */
export function claimCost (s: LedgerState, sp: LandSpace, sender: string, r: Rect & { maxPrice?: bigint }): bigint {
  within(sp, r)
  if (sender === sp.owner) return 0n
  for (const g of grantsOf(s, sp.id)) if (g.grantee === sender && contains(g, r)) return 0n
  if (sp.price > 0n) {
    // A claim that names no maxPrice pays nothing: otherwise an owner could revoke a grant or
    // raise the price ahead of a claim made in its grant (or at a lower price), and charge it.
    const max = r.maxPrice ?? 0n
    if (sp.price > max) throw new PriceAboveLimitError(`land in space ${sp.id} costs ${sp.price} a cell, over this claim's ${max}${r.maxPrice == null ? ' (it names no maxPrice)' : ''}`)
    return sp.price * BigInt(r.w) * BigInt(r.h)
  }
  throw new NotGrantedError(`space ${sp.id} is ${sp.owner}'s: a claim there needs the owner's grant or a price the owner set`)
}

/** Grants of one space. */
export function grantsIn (s: LedgerState, space: string): Grant[] {
  return [...grantsOf(s, space)]
}

/** A `land-grant`: the owner lets `to` claim within `r`. Checks everything, then changes the state. */
export function grant (s: LedgerState, id: string, sender: string, p: Rect & { space: string, to: string, record?: Uint8Array }): void {
  const { space: sp, registered } = spaceOf(s, p.space, p.record)
  if (sender !== sp.owner) throw new NotSpaceOwnerError(`only ${sp.owner} grants land in space ${sp.id}`)
  within(sp, p)
  const n = grantsBySpace(s).get(sp.id)?.size ?? 0
  if (n >= MAX_GRANTS_PER_SPACE) throw new TooManyGrantsError(`space ${sp.id} holds ${MAX_GRANTS_PER_SPACE} grants: revoke one first`)
  if (registered) s.spaces.set(sp.id, sp)
  const g = { id, space: sp.id, grantee: p.to, x: p.x, y: p.y, w: p.w, h: p.h }
  const index = grantsBySpace(s)
  s.grants.set(id, g)
  let of = index.get(sp.id)
  if (of == null) index.set(sp.id, of = new Map())
  of.set(id, g)
}

/** A `land-revoke`: the owner takes a grant back (parcels already claimed under it stay). */
export function revoke (s: LedgerState, sender: string, grantId: string): void {
  const g = s.grants.get(grantId)
  if (g == null) throw new UnknownGrantError(`no grant ${grantId}`)
  const sp = s.spaces.get(g.space)
  if (sp == null || sp.owner !== sender) throw new NotSpaceOwnerError(`grant ${grantId} is not in a space of the sender's`)
  const index = grantsBySpace(s)
  s.grants.delete(grantId)
  const of = index.get(g.space)
  of?.delete(grantId)
  if (of?.size === 0) index.delete(g.space)
}

/** A `land-price`: the owner sets the price per cell anyone may claim at (0 ends the sale). */
export function setPrice (s: LedgerState, sender: string, p: { space: string, price: bigint, record?: Uint8Array }): void {
  const { space: sp } = spaceOf(s, p.space, p.record)
  if (sender !== sp.owner) throw new NotSpaceOwnerError(`only ${sp.owner} sets the price of land in space ${sp.id}`)
  s.spaces.set(sp.id, { ...sp, price: p.price })
}

/** The state leaf fields of a space and a grant, in order (state.ts commits to them). */
export const SPACE_FIELDS = ['owner', 'width', 'depth', 'price'] as const
export const GRANT_FIELDS = ['space', 'grantee', 'x', 'y', 'w', 'h'] as const

/** Decodes a proven space value (key `space/<id>`). */
export function decodeSpaceValue (value: Uint8Array): Omit<LandSpace, 'id'> {
  const [owner, width, depth, price] = dagCbor.decode(value) as [string, number, number, number | bigint]
  return { owner, width, depth, price: BigInt(price) }
}
