/**
 * The directory's signed records, as pure functions: a listing (an owner's word that one of their
 * public spaces is open, with the space's own signed descriptor inside to prove it is public and
 * theirs) and an unlisting (a tombstone that removes it at once). Both carry the owner's proof of
 * work (the space admission's hashcash, bound to the directory and the owner's did), so each new
 * identity in the directory costs its maker about 2^DIRECTORY_WORK_BITS hashes and a reader checks
 * it with one. Every field is bounded; the cheap checks (size, shape, work) come before the two
 * signatures, so a flood of junk costs a reader little.
 */
import { CID } from 'multiformats/cid'
import { isAdmitted, solveAdmission, ADMISSION_NONCE_BYTES } from '../space/admission.ts'
import type { Ed25519Key } from '../identity/ed25519.ts'
import { checkRecordSignature, readRecordSync, signRecord } from '../identity/record.ts'
import { MAX_DESCRIPTOR_BYTES, verifyDescriptor, type Descriptor } from '../space/records.ts'
import { checkLinkPeer, linkPeerId, MAX_LINK_ADDRESS_LENGTH } from '../net/links.ts'

export const LISTING_TYPE = 'peerverse/dir-listing'
export const UNLISTING_TYPE = 'peerverse/dir-unlisting'

/** Longest description, in characters. */
export const MAX_DESCRIPTION_LENGTH = 500
/** Tags a listing carries at most. */
export const MAX_TAGS = 8
/** Longest tag, in characters (lowercase letters, digits and '-'). */
export const MAX_TAG_LENGTH = 32
/** Longest thumbnail CID string. */
export const MAX_THUMBNAIL_LENGTH = 128
/** Owner peer addresses a listing carries at most (each ends in /p2p/<peer id>). */
export const MAX_LISTING_ADDRS = 4
/** Largest members-present count a listing may claim (a bigger claim is refused, not capped). */
export const MAX_PRESENT = 10_000
/** Largest encoded listing or unlisting. */
export const MAX_LISTING_BYTES = 8 * 1024
/** How far ahead of our clock a record may be stamped. */
export const MAX_LISTING_CLOCK_SKEW_MS = 60_000
/** Leading zero bits of the owner's proof of work (as a space admission: ~2^18 hashes, once per identity). */
export const DIRECTORY_WORK_BITS = 18
/** What the proof of work is bound to, in place of a space id (a space id is a CID, so the two never meet). */
export const DIRECTORY_WORK_SCOPE = 'peerverse/directory/1'

/** A record that is not a well-formed directory record, or whose signature does not check. */
export class InvalidListingError extends Error { name = 'InvalidListingError' }
/** A record (or one of its fields) over its bound. */
export class OversizedListingError extends Error { name = 'OversizedListingError' }
/** A listing of a private space (refused when made, dropped when received). */
export class PrivateSpaceListingError extends Error { name = 'PrivateSpaceListingError' }
/** A listing signed by someone other than the space's owner. */
export class NotListingOwnerError extends Error { name = 'NotListingOwnerError' }
/** A record without the owner's proof of work, or with one that does not meet DIRECTORY_WORK_BITS. */
export class ListingWorkError extends Error { name = 'ListingWorkError' }
/** A record stamped too far in the future, or older than the directory keeps. */
export class StaleListingError extends Error { name = 'StaleListingError' }

export interface ListingFields {
  description: string
  tags: string[]
  /** A CID string, or '' for none. */
  thumbnail: string
}

export interface ListingPayload extends ListingFields {
  space: string
  /** The space's signed descriptor (its CID is the space id). */
  descriptor: Uint8Array
  /** Members present now, as the owner's peer sees them. */
  present: number
  /** A few of the owner peer's shareable addresses. */
  addrs: string[]
  seq: number
  ts: number
  /** The owner's proof of work (DIRECTORY_WORK_BITS for DIRECTORY_WORK_SCOPE and the owner's did). */
  work: Uint8Array
}

export interface Listing extends Omit<ListingPayload, 'descriptor'> {
  name: string
  owner: string
  descriptor: Descriptor
  bytes: Uint8Array
}

export interface UnlistingPayload { space: string, seq: number, ts: number, work: Uint8Array }
export interface Unlisting extends UnlistingPayload { owner: string, bytes: Uint8Array }

export type DirectoryRecord = { kind: 'listing', listing: Listing } | { kind: 'unlisting', unlisting: Unlisting }

function invalid (message: string): never { throw new InvalidListingError(message) }
function oversized (message: string): never { throw new OversizedListingError(message) }

function checkInt (value: unknown, min: number, max: number, what: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) invalid(`${what} must be an integer from ${min}`)
  if (value > max) oversized(`${what} is over ${max}`)
  return value
}

function checkSpaceId (value: unknown): string {
  if (typeof value !== 'string' || value.length === 0) invalid('space must be a space id')
  if (value.length > 100) oversized('space id is over 100 characters')
  try { CID.parse(value) } catch { invalid(`space ${value.slice(0, 100)} is not a CID`) }
  return value
}

function checkWork (value: unknown, owner: string): Uint8Array {
  if (!(value instanceof Uint8Array) || value.length !== ADMISSION_NONCE_BYTES) throw new ListingWorkError(`the proof of work is ${ADMISSION_NONCE_BYTES} bytes`)
  if (!isAdmitted(DIRECTORY_WORK_SCOPE, owner, value, DIRECTORY_WORK_BITS)) throw new ListingWorkError(`the proof of work of ${owner} does not meet ${DIRECTORY_WORK_BITS} bits`)
  return value
}

function checkTs (value: unknown, now: number, maxAgeMs: number): number {
  const ts = checkInt(value, 0, Number.MAX_SAFE_INTEGER, 'ts')
  if (ts > now + MAX_LISTING_CLOCK_SKEW_MS) throw new StaleListingError(`stamped ${ts - now} ms in the future`)
  if (ts < now - maxAgeMs) throw new StaleListingError(`stamped ${now - ts} ms ago, older than ${maxAgeMs} ms`)
  return ts
}

/** Checks the fields an owner chooses, as given by a user (throws the same named errors as a peer's record gets). */
export function checkListingFields (fields: Partial<ListingFields>): ListingFields {
  const description = fields.description ?? ''
  if (typeof description !== 'string') invalid('description must be text')
  if (description.length > MAX_DESCRIPTION_LENGTH) oversized(`description is over ${MAX_DESCRIPTION_LENGTH} characters`)
  const tags = fields.tags ?? []
  if (!Array.isArray(tags)) invalid('tags must be a list')
  if (tags.length > MAX_TAGS) oversized(`more than ${MAX_TAGS} tags`)
  for (const t of tags) {
    if (typeof t !== 'string') invalid('a tag is text')
    if (t.length > MAX_TAG_LENGTH) oversized(`a tag is over ${MAX_TAG_LENGTH} characters`)
    if (!/^[a-z0-9][a-z0-9-]*$/.test(t)) invalid(`tag ${JSON.stringify(t)} is not lowercase letters, digits and '-'`)
  }
  if (new Set(tags).size !== tags.length) invalid('tags repeat')
  const thumbnail = fields.thumbnail ?? ''
  if (typeof thumbnail !== 'string') invalid('thumbnail must be a CID')
  if (thumbnail.length > MAX_THUMBNAIL_LENGTH) oversized(`thumbnail is over ${MAX_THUMBNAIL_LENGTH} characters`)
  if (thumbnail !== '') {
    try { CID.parse(thumbnail) } catch { invalid('thumbnail must be a CID') }
  }
  return { description, tags, thumbnail }
}

function checkAddrs (value: unknown): string[] {
  if (!Array.isArray(value)) invalid('addrs must be a list')
  if (value.length > MAX_LISTING_ADDRS) oversized(`more than ${MAX_LISTING_ADDRS} addresses`)
  let peer: string | undefined
  for (const a of value) {
    if (typeof a === 'string' && a.length > MAX_LINK_ADDRESS_LENGTH) oversized(`an address is over ${MAX_LINK_ADDRESS_LENGTH} characters`)
    try { checkLinkPeer(a) } catch (err) { invalid(`address: ${(err as Error).message}`) }
    const p = linkPeerId(a)
    if (peer != null && p !== peer) invalid('the addresses of a listing are of one peer')
    peer = p
  }
  return value as string[]
}

/**
 * Verifies a directory record from anywhere: a listing or an unlisting, within bounds, with the
 * owner's proof of work and signature; a listing's descriptor must be the space's, public, and
 * signed by the same owner. `maxAgeMs` is how old a record may be (the directory's TTL).
 */
export function verifyDirectoryRecord (bytes: Uint8Array, now: number, maxAgeMs: number): DirectoryRecord {
  if (!(bytes instanceof Uint8Array)) invalid('a directory record is bytes')
  if (bytes.length > MAX_LISTING_BYTES) oversized(`record is ${bytes.length} bytes, over ${MAX_LISTING_BYTES}`)
  let read
  try {
    read = readRecordSync(bytes, { maxBytes: MAX_LISTING_BYTES })
  } catch (err) {
    invalid(`${(err as Error).name}: ${(err as Error).message}`)
  }
  const owner = read.record.author
  const p = read.record.payload as Record<string, unknown> | null
  if (p == null || typeof p !== 'object' || Array.isArray(p)) invalid('payload must be a map')
  if (read.record.type === UNLISTING_TYPE) {
    if (Object.keys(p).length !== 4) invalid('an unlisting has space, seq, ts and work')
    const space = checkSpaceId(p.space)
    const seq = checkInt(p.seq, 0, Number.MAX_SAFE_INTEGER, 'seq')
    const ts = checkTs(p.ts, now, maxAgeMs)
    const work = checkWork(p.work, owner)
    try { checkRecordSignature(read) } catch (err) { invalid((err as Error).message) }
    return { kind: 'unlisting', unlisting: { space, seq, ts, work, owner, bytes } }
  }
  if (read.record.type !== LISTING_TYPE) invalid(`not a directory record: ${read.record.type}`)
  if (Object.keys(p).length !== 10) invalid('a listing has space, descriptor, description, tags, thumbnail, present, addrs, seq, ts and work')
  const space = checkSpaceId(p.space)
  if (!(p.descriptor instanceof Uint8Array)) invalid('descriptor must be bytes')
  if (p.descriptor.length > MAX_DESCRIPTOR_BYTES) oversized(`descriptor is over ${MAX_DESCRIPTOR_BYTES} bytes`)
  const fields = checkListingFields({ description: p.description as string, tags: p.tags as string[], thumbnail: p.thumbnail as string })
  const present = checkInt(p.present, 0, MAX_PRESENT, 'present')
  const addrs = checkAddrs(p.addrs)
  const seq = checkInt(p.seq, 0, Number.MAX_SAFE_INTEGER, 'seq')
  const ts = checkTs(p.ts, now, maxAgeMs)
  const work = checkWork(p.work, owner)
  try { checkRecordSignature(read) } catch (err) { invalid((err as Error).message) }
  let descriptor: Descriptor
  try {
    descriptor = verifyDescriptor(p.descriptor, space)
  } catch (err) {
    invalid(`descriptor: ${(err as Error).message}`)
  }
  if (descriptor.owner !== owner) throw new NotListingOwnerError(`listing signed by ${owner}, but the space is ${descriptor.owner}'s`)
  if (descriptor.private) throw new PrivateSpaceListingError(`space ${space} is private`)
  return { kind: 'listing', listing: { space, ...fields, present, addrs, seq, ts, work, name: descriptor.name, owner, descriptor, bytes } }
}

/** Finds the owner's proof of work (about 2^DIRECTORY_WORK_BITS hashes; keep it, it serves every listing). */
export async function solveListingWork (did: string, options: { signal?: AbortSignal, bits?: number } = {}): Promise<Uint8Array> {
  return await solveAdmission(DIRECTORY_WORK_SCOPE, did, { bits: options.bits ?? DIRECTORY_WORK_BITS, signal: options.signal })
}

/** Signs a listing of a public space we own. Throws PrivateSpaceListingError, NotListingOwnerError or the field errors. */
export async function createListing (key: Ed25519Key, did: string, input: ListingFields & { descriptor: Uint8Array, present: number, addrs: string[], seq: number, ts: number, work: Uint8Array }): Promise<Listing> {
  const descriptor = verifyDescriptor(input.descriptor)
  if (descriptor.private) throw new PrivateSpaceListingError(`space ${descriptor.id} is private: only public spaces are listed`)
  if (descriptor.owner !== did) throw new NotListingOwnerError(`space ${descriptor.id} is ${descriptor.owner}'s, not ours`)
  const fields = checkListingFields(input)
  const payload: ListingPayload = {
    space: descriptor.id,
    descriptor: input.descriptor,
    ...fields,
    present: Math.min(Math.max(0, Math.floor(input.present)), MAX_PRESENT),
    addrs: input.addrs.slice(0, MAX_LISTING_ADDRS),
    seq: input.seq,
    ts: input.ts,
    work: input.work
  }
  const rec = await signRecord(key, LISTING_TYPE, payload)
  if (rec.bytes.length > MAX_LISTING_BYTES) oversized(`listing is ${rec.bytes.length} bytes, over ${MAX_LISTING_BYTES}`)
  return { ...payload, name: descriptor.name, owner: rec.record.author, descriptor, bytes: rec.bytes }
}

/** Signs the owner's unlisting of a space (a tombstone: peers drop the listing at once). */
export async function createUnlisting (key: Ed25519Key, input: UnlistingPayload): Promise<Unlisting> {
  const rec = await signRecord(key, UNLISTING_TYPE, { space: checkSpaceId(input.space), seq: input.seq, ts: input.ts, work: input.work })
  return { ...input, owner: rec.record.author, bytes: rec.bytes }
}
