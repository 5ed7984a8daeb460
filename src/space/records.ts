/**
 * The signed records of a space, as pure functions: the descriptor (its id is the record's CID),
 * the owner's policy (editors, moderation, members of a private space), chat messages, world
 * updates and the low-rate beacon each member sends to the whole space. Every record is a signed
 * envelope over DAG-CBOR (src/identity/record.ts); these functions add the rules of each type.
 */
import { CID } from 'multiformats/cid'
import { isDid } from '../identity/did.ts'
import type { Ed25519Key } from '../identity/ed25519.ts'
import { signRecord, verifyRecordSync, type VerifiedRecord } from '../identity/record.ts'

export const SPACE_TYPE = 'peerverse/space'
export const POLICY_TYPE = 'peerverse/space-policy'
export const CHAT_TYPE = 'peerverse/space-chat'
export const WORLD_TYPE = 'peerverse/space-world'
export const BEACON_TYPE = 'peerverse/space-beacon'
export const BYE_TYPE = 'peerverse/space-bye'

/** Longest space name, in characters. */
export const MAX_SPACE_NAME_LENGTH = 100
/** Largest grid side, in metres. */
export const MAX_GRID_SIZE = 100_000
/** Smallest and largest interest cell, in metres. */
export const MIN_CELL_SIZE = 4
export const MAX_CELL_SIZE = 1024
/** A new space's side and interest cell when not given, in metres. */
export const DEFAULT_GRID_SIZE = 256
export const DEFAULT_CELL_SIZE = 16
/** Largest encoded descriptor. */
export const MAX_DESCRIPTOR_BYTES = 4 * 1024
/** Editors, banned, muted, kicked and members a policy may name, each. */
export const MAX_POLICY_LIST = 1024
/** Largest encoded policy. */
export const MAX_POLICY_BYTES = 512 * 1024
/** Longest chat message, in characters. */
export const MAX_CHAT_TEXT_LENGTH = 2000
/** Largest encoded chat record. */
export const MAX_CHAT_BYTES = 12 * 1024
/** Largest encoded world-update record (the Yjs update inside is bounded by world.ts). */
export const MAX_WORLD_RECORD_BYTES = 80 * 1024
/** Largest encoded beacon. */
export const MAX_BEACON_BYTES = 2 * 1024
/** Longest space id (a CID string), peer id, avatar CID and multiaddr a record may carry. */
export const MAX_SPACE_ID_LENGTH = 100
export const MAX_PEER_ID_LENGTH = 128
export const MAX_AVATAR_LENGTH = 128
export const MAX_ADDR_LENGTH = 256
/** Listen addresses a beacon carries at most. */
export const MAX_BEACON_ADDRS = 8
/** Longest display name, in characters. */
export const MAX_NAME_LENGTH = 64
/** How far ahead of our clock a chat message or beacon may be stamped. */
export const MAX_CLOCK_SKEW_MS = 60_000
/** How long a kick keeps a member out by default. */
export const DEFAULT_KICK_MS = 10 * 60_000

export class InvalidSpaceRecordError extends Error {
  name = 'InvalidSpaceRecordError'
}

export class NotSpaceOwnerError extends Error {
  name = 'NotSpaceOwnerError'
}

export interface Grid {
  /** Extent on x, in metres, from 0. */
  width: number
  /** Extent on z, in metres, from 0. */
  depth: number
  /** Interest cell side, in metres. */
  cell: number
}

export interface DescriptorPayload {
  name: string
  grid: Grid
  private: boolean
  created: number
}

export interface Descriptor extends DescriptorPayload {
  id: string
  owner: string
  bytes: Uint8Array
}

export interface PolicyPayload {
  space: string
  seq: number
  editors: string[]
  banned: string[]
  muted: string[]
  /** did → time (ms) until which the member is kept out. */
  kicked: Record<string, number>
  /**
   * did -> the Yjs clock up to which that author's world updates stay valid after the owner took
   * its rights away (removed as editor, banned, kicked): peers judge history by the rights it was
   * made under, so a late joiner accepts the same world as everyone else.
   */
  revoked: Record<string, number>
  /** Members of a private space (the owner is always one); empty for a public space. */
  members: string[]
}

export interface Policy extends PolicyPayload {
  bytes: Uint8Array
}

export interface ChatPayload { space: string, text: string, ts: number }
export interface Chat extends ChatPayload { id: string, author: string, bytes: Uint8Array }

export interface WorldPayload { space: string, update: Uint8Array }
export interface WorldRecord extends WorldPayload { id: string, author: string, bytes: Uint8Array }

export interface BeaconPayload {
  space: string
  /** The libp2p peer the member runs, so others can open a presence stream to it. */
  peer: string
  /** Where that peer listens (so a presence stream needs no lookup), at most MAX_BEACON_ADDRS. */
  addrs: string[]
  name: string
  /** Avatar model, a CID string, or '' for the default. */
  avatar: string
  position: [number, number, number]
  rotation: [number, number, number, number]
  ts: number
}
export interface Beacon extends BeaconPayload { author: string, bytes: Uint8Array }

function fail (message: string): never {
  throw new InvalidSpaceRecordError(message)
}

function checkString (value: unknown, max: number, what: string): string {
  if (typeof value !== 'string' || value.length > max) fail(`${what} must be a string of at most ${max} characters`)
  return value
}

function checkInt (value: unknown, min: number, max: number, what: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) fail(`${what} must be an integer in ${min}..${max}`)
  return value
}

function checkFinite (value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) fail(`${what} must be a finite number`)
  return value
}

function checkDids (value: unknown, what: string): string[] {
  if (!Array.isArray(value) || value.length > MAX_POLICY_LIST) fail(`${what} must be a list of at most ${MAX_POLICY_LIST} did:key strings`)
  for (const d of value) if (!isDid(d)) fail(`${what} holds something that is not a did:key`)
  if (new Set(value).size !== value.length) fail(`${what} repeats a did`)
  return value as string[]
}

function checkSpaceId (value: unknown): string {
  if (typeof value !== 'string' || value.length > MAX_SPACE_ID_LENGTH) fail('space must be a space id')
  try {
    CID.parse(value)
  } catch {
    fail(`space ${value} is not a CID`)
  }
  return value
}

/** Parses a space id (a CID string) given by a user or a peer. */
export function parseSpaceId (value: unknown): string {
  return checkSpaceId(value)
}

function checkGrid (value: unknown): Grid {
  const g = value as Partial<Grid> | null
  if (g == null || typeof g !== 'object') fail('grid must be a map')
  const width = checkInt(g.width, 1, MAX_GRID_SIZE, 'grid.width')
  const depth = checkInt(g.depth, 1, MAX_GRID_SIZE, 'grid.depth')
  const cell = checkInt(g.cell, MIN_CELL_SIZE, MAX_CELL_SIZE, 'grid.cell')
  if (Object.keys(g).length !== 3) fail('grid has unknown fields')
  return { width, depth, cell }
}

function checkVec (value: unknown, n: number, what: string): number[] {
  if (!Array.isArray(value) || value.length !== n) fail(`${what} must be ${n} numbers`)
  for (const x of value) checkFinite(x, what)
  return value as number[]
}

// -- descriptor ------------------------------------------------------------------------------

export async function createDescriptor (key: Ed25519Key, options: { name: string, grid?: Partial<Grid>, private?: boolean, created?: number }): Promise<Descriptor> {
  const payload: DescriptorPayload = {
    name: options.name,
    grid: {
      width: options.grid?.width ?? DEFAULT_GRID_SIZE,
      depth: options.grid?.depth ?? DEFAULT_GRID_SIZE,
      cell: options.grid?.cell ?? DEFAULT_CELL_SIZE
    },
    private: options.private === true,
    created: options.created ?? Date.now()
  }
  checkDescriptorPayload(payload)
  const rec = await signRecord(key, SPACE_TYPE, payload)
  return { ...payload, id: rec.cid.toString(), owner: rec.record.author, bytes: rec.bytes }
}

function checkDescriptorPayload (p: unknown): DescriptorPayload {
  const v = p as Partial<DescriptorPayload> | null
  if (v == null || typeof v !== 'object') fail('descriptor must be a map')
  const name = checkString(v.name, MAX_SPACE_NAME_LENGTH, 'name')
  if (name.trim().length === 0) fail('name must not be empty')
  const grid = checkGrid(v.grid)
  if (typeof v.private !== 'boolean') fail('private must be a boolean')
  const created = checkInt(v.created, 0, Number.MAX_SAFE_INTEGER, 'created')
  if (Object.keys(v).length !== 4) fail('descriptor has unknown fields')
  return { name, grid, private: v.private, created }
}

/** Verifies descriptor bytes; when `id` is given, that they are the space with that id. */
export function verifyDescriptor (bytes: Uint8Array, id?: string): Descriptor {
  const rec = verifyRecordSync<DescriptorPayload>(bytes, { type: SPACE_TYPE, maxBytes: MAX_DESCRIPTOR_BYTES })
  const cid = rec.cid.toString()
  if (id != null && cid !== id) fail(`descriptor is space ${cid}, not ${id}`)
  const p = checkDescriptorPayload(rec.record.payload)
  return { ...p, id: cid, owner: rec.record.author, bytes }
}

// -- policy ----------------------------------------------------------------------------------

/** The policy a space starts with: nobody named, and the owner as the one member if private. */
export function initialPolicy (d: Descriptor): PolicyPayload {
  return { space: d.id, seq: 0, editors: [], banned: [], muted: [], kicked: {}, revoked: {}, members: d.private ? [d.owner] : [] }
}

function checkPolicyPayload (p: unknown, d: Descriptor): PolicyPayload {
  const v = p as Partial<PolicyPayload> | null
  if (v == null || typeof v !== 'object') fail('policy must be a map')
  if (checkSpaceId(v.space) !== d.id) fail('policy is for another space')
  const seq = checkInt(v.seq, 1, Number.MAX_SAFE_INTEGER, 'seq')
  const editors = checkDids(v.editors, 'editors')
  const banned = checkDids(v.banned, 'banned')
  const muted = checkDids(v.muted, 'muted')
  const members = checkDids(v.members, 'members')
  if (!d.private && members.length > 0) fail('a public space has no member list')
  if (d.private && !members.includes(d.owner)) fail('the owner is a member of a private space')
  const kicked = v.kicked
  if (kicked == null || typeof kicked !== 'object' || Array.isArray(kicked)) fail('kicked must be a map')
  const entries = Object.entries(kicked)
  if (entries.length > MAX_POLICY_LIST) fail(`kicked names more than ${MAX_POLICY_LIST}`)
  for (const [did, until] of entries) {
    if (!isDid(did)) fail('kicked holds something that is not a did:key')
    checkInt(until, 0, Number.MAX_SAFE_INTEGER, 'kicked until')
  }
  const revoked = v.revoked
  if (revoked == null || typeof revoked !== 'object' || Array.isArray(revoked)) fail('revoked must be a map')
  const rev = Object.entries(revoked)
  if (rev.length > MAX_POLICY_LIST) fail(`revoked names more than ${MAX_POLICY_LIST}`)
  for (const [did, clock] of rev) {
    if (!isDid(did)) fail('revoked holds something that is not a did:key')
    checkInt(clock, 0, Number.MAX_SAFE_INTEGER, 'revoked clock')
  }
  if (Object.keys(v).length !== 8) fail('policy has unknown fields')
  return { space: d.id, seq, editors, banned, muted, kicked: kicked as Record<string, number>, revoked: revoked as Record<string, number>, members }
}

export async function createPolicy (key: Ed25519Key, d: Descriptor, payload: PolicyPayload): Promise<Policy> {
  const checked = checkPolicyPayload(payload, d)
  const rec = await signRecord(key, POLICY_TYPE, checked)
  if (rec.record.author !== d.owner) throw new NotSpaceOwnerError('only the space owner signs its policy')
  if (rec.bytes.length > MAX_POLICY_BYTES) fail(`policy is over ${MAX_POLICY_BYTES} bytes`)
  return { ...checked, bytes: rec.bytes }
}

/** Verifies a policy of space `d`: signed by its owner, well formed. */
export function verifyPolicy (bytes: Uint8Array, d: Descriptor): Policy {
  const rec = verifyRecordSync<PolicyPayload>(bytes, { type: POLICY_TYPE, maxBytes: MAX_POLICY_BYTES })
  if (rec.record.author !== d.owner) throw new NotSpaceOwnerError(`policy signed by ${rec.record.author}, not the owner`)
  return { ...checkPolicyPayload(rec.record.payload, d), bytes }
}

/** Whether `did` is kept out of the space by this policy at `now` (banned, kicked, not a member). */
export function isExcluded (d: Descriptor, policy: PolicyPayload, did: string, now: number): boolean {
  if (did === d.owner) return false
  if (policy.banned.includes(did)) return true
  if ((policy.kicked[did] ?? 0) > now) return true
  return d.private && !policy.members.includes(did)
}

// -- chat ------------------------------------------------------------------------------------

export async function createChat (key: Ed25519Key, space: string, text: string, ts = Date.now()): Promise<Chat> {
  const payload = checkChatPayload({ space, text, ts }, space, ts)
  const rec = await signRecord(key, CHAT_TYPE, payload)
  return { ...payload, id: rec.cid.toString(), author: rec.record.author, bytes: rec.bytes }
}

function checkChatPayload (p: unknown, space: string, now: number): ChatPayload {
  const v = p as Partial<ChatPayload> | null
  if (v == null || typeof v !== 'object') fail('chat must be a map')
  if (checkSpaceId(v.space) !== space) fail('chat message is for another space')
  const text = checkString(v.text, MAX_CHAT_TEXT_LENGTH, 'text')
  if (text.trim().length === 0) fail('text must not be empty')
  const ts = checkInt(v.ts, 0, now + MAX_CLOCK_SKEW_MS, 'ts')
  if (Object.keys(v).length !== 3) fail('chat has unknown fields')
  return { space, text, ts }
}

export function verifyChat (bytes: Uint8Array, space: string, now = Date.now()): Chat {
  const rec = verifyRecordSync<ChatPayload>(bytes, { type: CHAT_TYPE, maxBytes: MAX_CHAT_BYTES })
  return { ...checkChatPayload(rec.record.payload, space, now), id: rec.cid.toString(), author: rec.record.author, bytes }
}

// -- world updates ---------------------------------------------------------------------------

export async function createWorldRecord (key: Ed25519Key, space: string, update: Uint8Array): Promise<WorldRecord> {
  const rec = await signRecord(key, WORLD_TYPE, { space, update })
  if (rec.bytes.length > MAX_WORLD_RECORD_BYTES) fail(`world update record is over ${MAX_WORLD_RECORD_BYTES} bytes`)
  return { space, update, id: rec.cid.toString(), author: rec.record.author, bytes: rec.bytes }
}

export function verifyWorldRecord (bytes: Uint8Array, space: string): WorldRecord {
  const rec = verifyRecordSync<WorldPayload>(bytes, { type: WORLD_TYPE, maxBytes: MAX_WORLD_RECORD_BYTES })
  const v = rec.record.payload as Partial<WorldPayload> | null
  if (v == null || typeof v !== 'object' || Object.keys(v).length !== 2) fail('world record must have space and update')
  if (checkSpaceId(v.space) !== space) fail('world update is for another space')
  if (!(v.update instanceof Uint8Array)) fail('update must be bytes')
  return { space, update: v.update, id: rec.cid.toString(), author: rec.record.author, bytes }
}

// -- beacons ---------------------------------------------------------------------------------

export async function createBeacon (key: Ed25519Key, payload: BeaconPayload): Promise<Beacon> {
  const checked = checkBeaconPayload(payload, payload.space, payload.ts)
  const rec = await signRecord(key, BEACON_TYPE, checked)
  return { ...checked, author: rec.record.author, bytes: rec.bytes }
}

function checkBeaconPayload (p: unknown, space: string, now: number): BeaconPayload {
  const v = p as Partial<BeaconPayload> | null
  if (v == null || typeof v !== 'object') fail('beacon must be a map')
  if (checkSpaceId(v.space) !== space) fail('beacon is for another space')
  const peer = checkString(v.peer, MAX_PEER_ID_LENGTH, 'peer')
  if (!Array.isArray(v.addrs) || v.addrs.length > MAX_BEACON_ADDRS) fail(`addrs must be a list of at most ${MAX_BEACON_ADDRS}`)
  for (const a of v.addrs) checkString(a, MAX_ADDR_LENGTH, 'addr')
  const name = checkString(v.name, MAX_NAME_LENGTH, 'name')
  const avatar = checkString(v.avatar, MAX_AVATAR_LENGTH, 'avatar')
  if (avatar !== '') {
    try { CID.parse(avatar) } catch { fail('avatar must be a CID') }
  }
  const position = checkVec(v.position, 3, 'position') as [number, number, number]
  const rotation = checkVec(v.rotation, 4, 'rotation') as [number, number, number, number]
  const ts = checkInt(v.ts, 0, now + MAX_CLOCK_SKEW_MS, 'ts')
  if (Object.keys(v).length !== 8) fail('beacon has unknown fields')
  return { space, peer, addrs: v.addrs as string[], name, avatar, position, rotation, ts }
}

export function verifyBeacon (bytes: Uint8Array, space: string, now = Date.now()): Beacon {
  const rec = verifyRecordSync<BeaconPayload>(bytes, { type: BEACON_TYPE, maxBytes: MAX_BEACON_BYTES })
  return { ...checkBeaconPayload(rec.record.payload, space, now), author: rec.record.author, bytes }
}

// -- leaving ---------------------------------------------------------------------------------

export interface Bye { space: string, ts: number, author: string, bytes: Uint8Array }

/** A member's signed word that it left (so others drop it at once, not after a timeout). */
export async function createBye (key: Ed25519Key, space: string, ts = Date.now()): Promise<Bye> {
  const rec = await signRecord(key, BYE_TYPE, { space, ts })
  return { space, ts, author: rec.record.author, bytes: rec.bytes }
}

export function verifyBye (bytes: Uint8Array, space: string, now = Date.now()): Bye {
  const rec = verifyRecordSync<{ space: string, ts: number }>(bytes, { type: BYE_TYPE, maxBytes: MAX_BEACON_BYTES })
  const v = rec.record.payload
  if (v == null || typeof v !== 'object' || Object.keys(v).length !== 2) fail('bye must have space and ts')
  if (checkSpaceId(v.space) !== space) fail('bye is for another space')
  const ts = checkInt(v.ts, 0, now + MAX_CLOCK_SKEW_MS, 'ts')
  return { space, ts, author: rec.record.author, bytes }
}

export type { VerifiedRecord }
