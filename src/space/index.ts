/**
 * The space capability's public face: shared 3D places whose state lives with the peers in them
 * (signed descriptors and policy, presence to near members, chat, a Yjs world, private spaces
 * sealed to their members). Build it with `space(init)(components)`; it reaches the network only
 * through the ports it is given, and the ledger only through its parcels. Its events
 * (SPACE_EVENTS) are the API's `space:*` events, with the same details.
 */
import type { Ed25519Key } from '../identity/ed25519.ts'
import type { GossipPort, ProtocolPort, RejectSink, RoutingPort } from '../net/ports.ts'
import type { ParcelsOf } from './joined.ts'
import type { SpaceSocial } from './blocks.ts'
import { SpaceService } from './service.ts'
import { SpaceStore } from './store.ts'
import type { BytesSublevel } from '../store/store.ts'

export interface SpaceInit {
  /** Interest management on (default: frames only to near members) or off (every frame to everyone, over gossip): for benchmarks. */
  interest?: boolean
  /** How long joining a space looks for a peer that has it (default JOIN_TIMEOUT_MS). */
  joinTimeoutMs?: number
}

export interface SpaceIdentity {
  /** Our user did (did:key). */
  did: string
  /** Our user signing key. */
  key: Ed25519Key
  /** Our signed peer binding (user key -> this peer), sent when we open a presence stream. */
  binding: Uint8Array
}

export interface SpaceComponents {
  gossip: GossipPort
  protocols: ProtocolPort
  routing: RoutingPort
  /** Where input a peer should not have sent is reported. */
  onRejected: RejectSink
  identity: SpaceIdentity
  /** The capability's sublevel of the node's store, or a SpaceStore over it. */
  store: BytesSublevel | SpaceStore
  /** Land parcels of a space from the ledger (x/y of a parcel are metres on x/z). */
  parcels: ParcelsOf
  /** The user's blocks (social's `isBlocked`): a blocked member's chat and presence are hidden from the user in every space. */
  social?: SpaceSocial
}

/** The names of the events a space service emits (the API's event stream uses the same). */
export const SPACE_EVENTS = ['space:presence', 'space:leave', 'space:chat', 'space:world', 'space:policy'] as const

/** The space capability: `space({ interest })({ gossip, protocols, routing, onRejected, identity, store, parcels, social? })`. */
export function space (init: SpaceInit = {}): (components: SpaceComponents) => SpaceService {
  return components => new SpaceService({ interest: init.interest ?? true, joinTimeoutMs: init.joinTimeoutMs }, {
    gossip: components.gossip,
    protocols: components.protocols,
    routing: components.routing,
    onRejected: components.onRejected,
    did: components.identity.did,
    key: components.identity.key,
    binding: components.identity.binding,
    store: components.store instanceof SpaceStore ? components.store : new SpaceStore(components.store),
    parcels: components.parcels,
    social: components.social
  })
}

export { SpaceService, type SpaceView } from './service.ts'
export type { SpaceEvents, Parcel, ParcelsOf } from './joined.ts'
export type { MemberView } from './presence.ts'
export type { SpaceSocial } from './blocks.ts'
export type { ChatView } from './chat.ts'
export type { PolicyChange } from './policy.ts'
export type { CreateOptions, JoinOptions } from './membership.ts'
export { SpaceStore, MAX_CHAT_HISTORY } from './store.ts'
export * from './errors.ts'
export { spaceTopic, MAX_FRAME_RECORD_BYTES, MAX_SPACE_GOSSIP_BYTES } from './frames.ts'
export { MAX_JOINED_SPACES, MAX_SYNC_PEERS, JOIN_TIMEOUT_MS } from './membership.ts'
export { MAX_LINK_OTHER_HOLDERS } from './share.ts'
export {
  SPACE_PROTOCOL, SYNC_REQUESTS_PER_SECOND, SYNC_BURST, MAX_SYNC_WORLD_RECORDS, MAX_SYNC_WORLD_ROUNDS, MAX_SYNC_ANSWER_BYTES,
  MAX_GET_ENVELOPES, MAX_SYNC_STATE_VECTOR_BYTES, MAX_SYNC_REQUEST_BYTES, MAX_SYNC_FRAME_BYTES, SPACE_SYNC_INTERVAL_MS, parseSyncRequest
} from './sync.ts'
export {
  PRESENCE_PROTOCOL, PRESENCE_FRAMES_PER_SECOND, MAX_PRESENCE_STREAMS_PER_PEER, BEACONS_PER_PEER_PER_SECOND, BEACON_BURST, MAX_BEACON_AGE_MS
} from './streams.ts'
export {
  CHAT_PER_SECOND, CHAT_BURST, CHAT_SEND_MARGIN, CHAT_PER_PEER_PER_SECOND, CHAT_PEER_BURST, NEWCOMER_CHAT_PER_SECOND, NEWCOMER_CHAT_BURST, MAX_SYNC_NEW_AUTHORS
} from './chat.ts'
export {
  MAX_NEWCOMER_CHAT, MAX_PROMOTED_CHAT, MAX_CHAT_KEPT, NEWCOMER_PROBATION_MS, PROMOTIONS_PER_HOUR, PROMOTION_BURST, MAX_NEWCOMERS_TRACKED, MAX_PROMOTED, ChatHistory, isPrivileged
} from './history.ts'
export { SPACE_ADMISSION_BITS, ADMISSION_NONCE_BYTES, ADMISSION_DOMAIN, checkAdmission, isAdmitted, solveAdmission } from './admission.ts'
export {
  WORLD_UPDATES_PER_SECOND, WORLD_UPDATE_BURST, WORLD_SEND_MARGIN, WORLD_UPDATES_PER_PEER_PER_SECOND, WORLD_UPDATE_PEER_BURST
} from './edits.ts'
export { MAX_KEY_EPOCHS } from './keyring.ts'
export {
  MAX_PRESENCE_HZ, MOVING_INTERVAL_MS, STILL_HEARTBEAT_MS, MOVING_GRACE_MS, BEACON_MOVING_MS, BEACON_STILL_MS,
  BEACONS_IN_MOVING_PER_SECOND, BEACONS_IN_STILL_PER_SECOND, MEMBER_GONE_MS, SWEEP_INTERVAL_MS, beaconInterval, goneAfter
} from './interest.ts'
