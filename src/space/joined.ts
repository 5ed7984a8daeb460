/**
 * What the parts of the space capability share: the state of one joined space, split so that
 * each part owns its own fields (the keys, the chat, the world, presence, the presence streams),
 * and the context (SpaceCore) the coordinating service hands every part: identity, storage, the
 * network ports, the ledger's parcels, the joined spaces and the event sink.
 */
import type { Ed25519Key } from '../identity/ed25519.ts'
import type { GossipPort, ProtocolPort, RejectSink, RoutingPort } from '../net/ports.ts'
import type { ChatLog, ChatView } from './chat.ts'
import type { WorldLog } from './edits.ts'
import { ExcludedError, NotJoinedError } from './errors.ts'
import type { KeyRing } from './keyring.ts'
import type { MemberView, PresenceState } from './presence.ts'
import { isExcluded, type Descriptor, type PolicyPayload } from './records.ts'
import type { SpaceStore } from './store.ts'
import type { PresenceStreams } from './streams.ts'

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
  readonly chat: ChatLog
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
