/**
 * The directory capability's public face: listings of live public spaces, spread over gossip and
 * found through the DHT, with no centre. Build it with `directory(init)(components)`; it reaches
 * the network only through its ports, the space capability only through a narrow view (descriptors
 * and members present of spaces we are in) and social only through `isBlocked`. Its events
 * (DIRECTORY_EVENTS) are the API's `directory:*` events, with the same details.
 */
import type { Ed25519Key } from '../identity/ed25519.ts'
import type { GossipPort, ProtocolPort, RejectSink, RoutingPort } from '../net/ports.ts'
import type { BytesSublevel } from '../store/store.ts'
import { DIRECTORY_REFRESH_MS, DirectoryService, LISTING_TTL_MS, type DirectorySocial, type DirectorySpaces } from './service.ts'

export interface DirectoryInit {
  /** How often our listings are republished (default DIRECTORY_REFRESH_MS). */
  refreshMs?: number
  /** How long a listing lives without a refresh (default LISTING_TTL_MS). */
  ttlMs?: number
}

export interface DirectoryComponents {
  gossip: GossipPort
  protocols: ProtocolPort
  routing: RoutingPort
  /** Where input a peer should not have sent is reported. */
  onRejected: RejectSink
  identity: { did: string, key: Ed25519Key }
  /** The capability's sublevel of the node's store (our own listings and proof of work). */
  store: BytesSublevel
  /** Descriptors and members present of the spaces we are in. */
  spaces: DirectorySpaces
  /** Whether the user blocked an owner (never shown). */
  social: DirectorySocial
}

/** The names of the events the directory emits (the API's event stream uses the same). */
export const DIRECTORY_EVENTS = ['directory:listing', 'directory:removed'] as const

/** The directory capability: `directory({ refreshMs, ttlMs })({ gossip, protocols, routing, onRejected, identity, store, spaces, social })`. */
export function directory (init: DirectoryInit = {}): (components: DirectoryComponents) => DirectoryService {
  return components => new DirectoryService({
    refreshMs: init.refreshMs ?? DIRECTORY_REFRESH_MS,
    ttlMs: init.ttlMs ?? LISTING_TTL_MS
  }, {
    gossip: components.gossip,
    protocols: components.protocols,
    routing: components.routing,
    onRejected: components.onRejected,
    did: components.identity.did,
    key: components.identity.key,
    store: components.store,
    spaces: components.spaces,
    social: components.social
  })
}

export {
  DirectoryService, DirectoryRateLimitError, TooManyListingsError,
  DIRECTORY_TOPIC, DIRECTORY_PROTOCOL, DIRECTORY_KEY, DIRECTORY_KEY_TEXT, DIRECTORY_REFRESH_MS, LISTING_TTL_MS, DIRECTORY_CHECK_MS,
  MIN_REPUBLISH_MS, GOSSIP_RECORDS_PER_PEER_PER_SECOND, GOSSIP_RECORD_BURST, SYNC_REQUESTS_PER_PEER_PER_SECOND, SYNC_REQUEST_BURST,
  MAX_RATE_LIMITED_PEERS, MAX_SYNC_REQUEST_BYTES, DISCOVERY_TIMEOUT_MS, SYNC_TIMEOUT_MS,
  type DirectorySpaces, type DirectorySocial, type ListingView, type DirectoryEvents, type DirectoryStatus
} from './service.ts'
export { DirectoryBook, compareListings, MAX_LISTINGS, MAX_LISTINGS_PER_OWNER, MAX_TOMBSTONES, type PutResult, type PutOptions, type Removal } from './book.ts'
export {
  MAX_NEW_OWNERS_PER_PEER, NEW_OWNER_WINDOW_MS, MAX_NEW_OWNER_PEERS, MAX_SYNC_RECORDS, MAX_BAD_SYNC_RECORDS, MAX_SYNC_PEERS,
  NewOwnerBudget, SyncPeers, SyncReader, syncAnswer, rateLimitedVerdict
} from './budget.ts'
export {
  LISTING_TYPE, UNLISTING_TYPE, MAX_DESCRIPTION_LENGTH, MAX_TAGS, MAX_TAG_LENGTH, MAX_THUMBNAIL_LENGTH, MAX_LISTING_ADDRS, MAX_PRESENT,
  MAX_LISTING_BYTES, MAX_LISTING_CLOCK_SKEW_MS, DIRECTORY_WORK_BITS, DIRECTORY_WORK_SCOPE,
  InvalidListingError, OversizedListingError, PrivateSpaceListingError, NotListingOwnerError, ListingWorkError, StaleListingError,
  checkListingFields, createListing, createUnlisting, verifyDirectoryRecord, solveListingWork,
  type Listing, type ListingFields, type ListingPayload, type Unlisting, type DirectoryRecord
} from './listing.ts'
