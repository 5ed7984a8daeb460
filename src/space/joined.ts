/**
 * What the parts of the space capability share: the state of one joined space, split so that
 * each part owns its own fields (the keys, the chat, the world, presence, the presence streams),
 * and the context (SpaceCore) the coordinating service hands every part: identity, storage, the
 * network ports, the ledger's parcels, the joined spaces and the event sink.
 */
import type { Ed25519Key } from '../identity/ed25519.ts'
import type { GossipPort, ProtocolPort, RejectSink, RoutingPort } from '../net/ports.ts'
import type { Stream } from '@libp2p/interface'
import type { Framed } from '../net/framed.ts'
import { ExcludedError, NotJoinedError } from './errors.ts'
import type { KeyRing } from './keyring.ts'
import type { MemberView, PresenceState } from './presence.ts'
import type { ChatHistory } from './history.ts'
import { isExcluded, type Descriptor, type PolicyPayload } from './records.ts'
import type { SpaceStore } from './store.ts'
import { World, type AppliedUpdate, type UpdateRange } from './world.ts'

/** A land parcel of a space from the ledger (x/y of a parcel are metres on x/z). */
export interface Parcel { owner: string, x: number, y: number, w: number, h: number }

/** The ledger's parcels of a space. */
export type ParcelsOf = (space: string) => Iterable<Parcel>

/** The events a space service emits, with their details (the API's event stream names). */
export interface SpaceEvents {
  'space:presence': CustomEvent<{ space: string } & MemberView>
  'space:leave': CustomEvent<{ space: string, did: string }>
  'space:chat': CustomEvent<{ space: string } & ChatView>
  'space:world': CustomEvent<{ space: string, author: string, objects: string[] }>
  'space:policy': CustomEvent<{ space: string, policy: Omit<PolicyPayload, 'space'> }>
}


// -- the parts' state, each owned by the file named beside it --------------------------------

/** A chat message as the API shows it (chat.ts). */
export interface ChatView { id: string, author: string, text: string, ts: number }

/** Signed records we hold while their updates wait for earlier ones (World.offer holds the updates). */
export const MAX_HELD_WORLD_RECORDS = 256

/** An accepted world record with the Yjs clock range it adds, for sync. */
export interface WorldRecordRange extends UpdateRange { bytes: Uint8Array }

/** A space's world: the document, the records it was built from, and the records held back (edits.ts). */
export class WorldLog {
  readonly world = new World()
  readonly records: WorldRecordRange[] = []
  /** Signed records awaiting earlier ones, by record id (oldest first). */
  readonly held = new Map<string, Uint8Array>()

  accepted (applied: AppliedUpdate, bytes: Uint8Array): void {
    this.records.push({ client: applied.client, clockStart: applied.clockStart, clockEnd: applied.clockEnd, bytes })
  }

  hold (id: string, bytes: Uint8Array): void {
    this.held.set(id, bytes)
    while (this.held.size > MAX_HELD_WORLD_RECORDS) this.held.delete(this.held.keys().next().value as string)
  }
}

/** One presence stream we send on (streams.ts). */
export interface Outbound {
  stream?: Stream
  out?: Framed
  busy: boolean
  closed: boolean
}

/** A space's presence streams: ours out, by peer, and theirs in (streams.ts). */
export class PresenceStreams {
  readonly out = new Map<string, Outbound>()
  readonly inbound = new Map<string, Set<Stream>>()
}

/** One space we are in. */
export interface Joined {
  /** The signed descriptor (id, owner, grid, private). */
  readonly d: Descriptor
  /** The owner's latest policy (policy.ts replaces it). */
  policy: PolicyPayload
  /** The owner has taken us out: we keep the history but get nothing new. */
  removed: boolean
  /** Group keys and envelopes of a private space (keyring.ts). */
  readonly keys: KeyRing
  /** The chat history kept, by part (history.ts). */
  readonly chat: ChatHistory
  /** Our admission proof for a public space we do not own (admission.ts), sent with our chat and beacons. */
  admission?: Uint8Array
  /** The world document and the signed records it was built from (edits.ts). */
  readonly edits: WorldLog
  /** Our presence and the members we hear of (the pure model, presence.ts). */
  readonly presence: PresenceState
  /** Open presence streams, out and in (streams.ts). */
  readonly streams: PresenceStreams
  /** Leaves the space's gossip topic. */
  unsubscribe: () => void
}

export interface SpaceCore {
  readonly did: string
  readonly key: Ed25519Key
  /** Our signed peer binding (user key -> this peer), sent when we open a presence stream. */
  readonly binding: Uint8Array
  readonly store: SpaceStore
  readonly gossip: GossipPort
  readonly protocols: ProtocolPort
  readonly routing: RoutingPort
  readonly parcels: ParcelsOf
  readonly reject: RejectSink
  /** The spaces we are in, by id. */
  readonly joined: Map<string, Joined>
  emit: <K extends keyof SpaceEvents>(type: K, detail: SpaceEvents[K]['detail']) => void
}

/** The joined space `id`, or NotJoinedError. */
export function need (core: SpaceCore, id: string): Joined {
  const j = core.joined.get(id)
  if (j == null) throw new NotJoinedError(`not in space ${id}`)
  return j
}

/** Throws ExcludedError when the owner keeps us out (banned, kicked, removed from a private space). */
export function checkActive (core: SpaceCore, j: Joined): void {
  if (j.removed || isExcluded(j.d, j.policy, core.did, Date.now())) throw new ExcludedError(`the owner keeps you out of ${j.d.id}`)
}
