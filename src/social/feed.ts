/**
 * Feeds: each author's signed, hash-linked, sequence-numbered log (as in Secure Scuttlebutt), and
 * the rules every honest peer applies to it. Pure: no I/O, the clock is passed in.
 *
 * An entry is a signed record (src/identity/record.ts) of type `peerverse/feed-entry` whose
 * payload is { seq, prev, ts, kind, body }: seq counts from 1, prev is the CID of the author's
 * previous entry (null for the first), ts is the author's clock in milliseconds. The signature
 * covers the canonical DAG-CBOR encoding, and the entry's CID is its id.
 */
import { CID } from 'multiformats/cid'
import { isDid } from '../identity/did.ts'
import { signRecord, verifyRecord, type VerifiedRecord } from '../identity/record.ts'
import type { Ed25519Key } from '../identity/ed25519.ts'

export const FEED_ENTRY_TYPE = 'peerverse/feed-entry'
/** Largest encoded entry. */
export const MAX_ENTRY_BYTES = 16 * 1024
/** Longest post or reply text, in UTF-8 bytes. */
export const MAX_TEXT_BYTES = 8 * 1024
/** Longest profile name and bio. */
export const MAX_NAME_BYTES = 128
export const MAX_BIO_BYTES = 1024
/** Attachments (content CIDs) on one post. */
export const MAX_ATTACHMENTS = 8
/** How far ahead of our clock an entry's timestamp may be. */
export const MAX_CLOCK_SKEW_MS = 5 * 60_000
/** Highest sequence number (far beyond any real feed; keeps keys fixed-width). */
export const MAX_SEQ = 1e12

export type EntryKind = 'profile' | 'post' | 'reply' | 'like' | 'follow' | 'unfollow' | 'delete'

export interface ProfileBody { name?: string, bio?: string, avatar?: CID }
export interface PostBody { text: string, attachments?: CID[] }
export interface ReplyBody { text: string, to: CID, attachments?: CID[] }
export interface LikeBody { of: CID }
export interface FollowBody { did: string }
export interface DeleteBody { of: CID }

export type EntryBody = ProfileBody | PostBody | ReplyBody | LikeBody | FollowBody | DeleteBody

export interface EntryPayload {
  seq: number
  prev: CID | null
  ts: number
  kind: EntryKind
  body: EntryBody
}

/** A verified entry: its author, id (CID), bytes and payload. */
export interface Entry {
  author: string
  id: CID
  bytes: Uint8Array
  payload: EntryPayload
}

/** The last entry of a feed we hold. */
export interface FeedHead {
  seq: number
  id: CID
  ts: number
}

export class InvalidEntryError extends Error {
  name = 'InvalidEntryError'
}

export class SequenceGapError extends Error {
  name = 'SequenceGapError'
}

export class WrongPreviousError extends Error {
  name = 'WrongPreviousError'
}

export class FutureEntryError extends Error {
  name = 'FutureEntryError'
}

export class ForkedFeedError extends Error {
  name = 'ForkedFeedError'
}

const KINDS = new Set<EntryKind>(['profile', 'post', 'reply', 'like', 'follow', 'unfollow', 'delete'])
const encoder = new TextEncoder()

function text (value: unknown, field: string, max: number, required: boolean): void {
  if (value === undefined && !required) return
  if (typeof value !== 'string') throw new InvalidEntryError(`${field} must be a string`)
  if (required && value.length === 0) throw new InvalidEntryError(`${field} must not be empty`)
  if (encoder.encode(value).length > max) throw new InvalidEntryError(`${field} is over ${max} bytes`)
}

function cid (value: unknown, field: string): void {
  if (!(value instanceof CID) && CID.asCID(value) == null) throw new InvalidEntryError(`${field} must be a CID`)
}

function onlyKeys (body: object, allowed: string[], kind: string): void {
  for (const key of Object.keys(body)) if (!allowed.includes(key)) throw new InvalidEntryError(`unknown field ${key} in a ${kind}`)
}

function attachments (value: unknown): void {
  if (value === undefined) return
  if (!Array.isArray(value) || value.length > MAX_ATTACHMENTS) throw new InvalidEntryError(`attachments must be a list of at most ${MAX_ATTACHMENTS} CIDs`)
  value.forEach((v, i) => { cid(v, `attachments[${i}]`) })
}

/** Checks an entry's body against its kind; InvalidEntryError otherwise. */
export function checkBody (kind: EntryKind, body: unknown): void {
  if (body == null || typeof body !== 'object' || Array.isArray(body)) throw new InvalidEntryError('body must be a map')
  const b = body as Record<string, unknown>
  switch (kind) {
    case 'profile':
      onlyKeys(b, ['name', 'bio', 'avatar'], kind)
      text(b.name, 'name', MAX_NAME_BYTES, false)
      text(b.bio, 'bio', MAX_BIO_BYTES, false)
      if (b.avatar !== undefined) cid(b.avatar, 'avatar')
      return
    case 'post':
      onlyKeys(b, ['text', 'attachments'], kind)
      text(b.text, 'text', MAX_TEXT_BYTES, true)
      attachments(b.attachments)
      return
    case 'reply':
      onlyKeys(b, ['text', 'to', 'attachments'], kind)
      text(b.text, 'text', MAX_TEXT_BYTES, true)
      cid(b.to, 'to')
      attachments(b.attachments)
      return
    case 'like':
    case 'delete':
      onlyKeys(b, ['of'], kind)
      cid(b.of, 'of')
      return
    case 'follow':
    case 'unfollow':
      onlyKeys(b, ['did'], kind)
      if (typeof b.did !== 'string' || !isDid(b.did)) throw new InvalidEntryError('did must be a did:key')
      return
  }
}

/** Checks the payload's shape (not its place in the feed); InvalidEntryError otherwise. */
export function checkPayload (payload: unknown): asserts payload is EntryPayload {
  if (payload == null || typeof payload !== 'object' || Array.isArray(payload)) throw new InvalidEntryError('payload must be a map')
  const p = payload as Record<string, unknown>
  onlyKeys(p, ['seq', 'prev', 'ts', 'kind', 'body'], 'payload')
  if (typeof p.seq !== 'number' || !Number.isSafeInteger(p.seq) || p.seq < 1 || p.seq > MAX_SEQ) throw new InvalidEntryError('seq must be an integer from 1')
  if (p.seq === 1 ? p.prev !== null : CID.asCID(p.prev) == null) throw new InvalidEntryError(p.seq === 1 ? 'the first entry has prev null' : 'prev must be the CID of the previous entry')
  if (typeof p.ts !== 'number' || !Number.isSafeInteger(p.ts) || p.ts < 0) throw new InvalidEntryError('ts must be a non-negative integer (ms)')
  if (typeof p.kind !== 'string' || !KINDS.has(p.kind as EntryKind)) throw new InvalidEntryError(`unknown entry kind ${String(p.kind)}`)
  checkBody(p.kind as EntryKind, p.body)
}

/**
 * Decodes and verifies entry bytes from anywhere: size, canonical encoding, signature, shape.
 * Throws the identity errors (InvalidSignatureError, NonCanonicalEncodingError, ...) or
 * InvalidEntryError. Says nothing about the entry's place in its feed (see checkAppend).
 */
export async function decodeEntry (bytes: Uint8Array): Promise<Entry> {
  const verified: VerifiedRecord = await verifyRecord(bytes, { maxBytes: MAX_ENTRY_BYTES, type: FEED_ENTRY_TYPE })
  checkPayload(verified.record.payload)
  return { author: verified.record.author, id: verified.cid, bytes: verified.bytes, payload: verified.record.payload }
}

/**
 * Whether `entry` may follow `head` in its author's feed (null: we hold none of it yet, and then
 * only seq 1 may start it). Throws SequenceGapError, WrongPreviousError or FutureEntryError.
 * An entry at or below the head is not an append: see sameOrFork.
 */
export function checkAppend (head: FeedHead | null, entry: Entry, now: number): void {
  const { seq, prev, ts } = entry.payload
  const expected = (head?.seq ?? 0) + 1
  if (seq !== expected) throw new SequenceGapError(`entry ${seq} of ${entry.author} does not follow ${expected - 1}`)
  if (head != null && (prev == null || !prev.equals(head.id))) throw new WrongPreviousError(`entry ${seq} of ${entry.author} does not link to entry ${head.seq}`)
  if (ts > now + MAX_CLOCK_SKEW_MS) throw new FutureEntryError(`entry ${seq} of ${entry.author} is dated ${ts - now} ms in the future`)
}

/** For an entry at a seq we already hold: true when it is the same entry, false when it forks. */
export function sameEntry (held: CID, entry: Entry): boolean {
  return held.equals(entry.id)
}

/** Signs the next entry of `key`'s feed after `head`. */
export async function createEntry (key: Ed25519Key, head: FeedHead | null, kind: EntryKind, body: EntryBody, now: number): Promise<Entry> {
  const payload: EntryPayload = { seq: (head?.seq ?? 0) + 1, prev: head?.id ?? null, ts: Math.max(now, head?.ts ?? 0), kind, body: dropUndefined(body) }
  checkPayload(payload)
  const signed = await signRecord(key, FEED_ENTRY_TYPE, payload)
  if (signed.bytes.length > MAX_ENTRY_BYTES) throw new InvalidEntryError(`entry is ${signed.bytes.length} bytes, over ${MAX_ENTRY_BYTES}`)
  return { author: signed.record.author, id: signed.cid, bytes: signed.bytes, payload }
}

function dropUndefined<T extends object> (o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T
}

/** The follow set a feed's entries say, in order: follow adds, unfollow removes. */
export function followsOf (entries: Iterable<Pick<EntryPayload, 'kind' | 'body'>>): Set<string> {
  const out = new Set<string>()
  for (const e of entries) {
    if (e.kind === 'follow') out.add((e.body as FollowBody).did)
    if (e.kind === 'unfollow') out.delete((e.body as FollowBody).did)
  }
  return out
}

/** The latest profile a feed's entries say (later fields override earlier ones). */
export function profileOf (entries: Iterable<Pick<EntryPayload, 'kind' | 'body'>>): ProfileBody {
  let out: ProfileBody = {}
  for (const e of entries) if (e.kind === 'profile') out = { ...out, ...(e.body as ProfileBody) }
  return out
}
