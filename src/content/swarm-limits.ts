/**
 * The swarm's limits, defined once here so the downloader, the holder and the tests read the same
 * numbers (js-libp2p doc/LIMITS.md style). Enforced in swarm-download.ts,
 * swarm-schedule.ts and swarm-holder.ts.
 */

/** Requests a downloader keeps outstanding with one holder; a holder refuses more. */
export const MAX_BLOCKS_IN_FLIGHT_PER_PEER = 8
/** Requests a downloader keeps outstanding with one holder however slow it is (one arriving, one queued behind it). */
export const MIN_BLOCKS_IN_FLIGHT_PER_PEER = 2
/**
 * Seconds of a holder's measured rate a downloader keeps requested from it (BitTorrent clients'
 * request queue time): its window is rate x this / block size, between the two bounds above. A
 * holder not yet measured gets the largest window.
 */
export const REQUEST_QUEUE_SECONDS = 3
/** Requests a holder accepts from one peer per second (a token bucket of this rate) ... */
export const REQUESTS_PER_PEER_PER_SECOND = 2048
/** ... with this burst. */
export const REQUEST_BURST = 256
/** Largest frame a holder reads from a downloader (requests only: no block is ever sent this way). */
export const MAX_REQUEST_FRAME_BYTES = 256
/** Concurrent sessions (streams) one connection may open to us, and we to it. */
export const MAX_SESSIONS_PER_CONNECTION = 32
/** Holders one download talks to at once. */
export const MAX_PEERS_PER_DOWNLOAD = 16
/** A request unanswered this long may be sent to another holder. */
export const STALL_TIMEOUT_MS = 5_000
/** A holder that stalls this many times is dropped from the download. */
export const MAX_STALLS_PER_SESSION = 3
/** Time a holder has to answer OPEN (and a downloader to send it). */
export const SESSION_OPEN_TIMEOUT_MS = 5_000
/** How often a download looks for more holders while it has fewer than it could use. */
export const PEER_REFRESH_MS = 1_000
/** A peer that said it holds nothing is not asked again for this long. */
export const PROBE_BACKOFF_MS = 2_000
/** DHT provider lookups for one download are this far apart at least. */
export const PROVIDER_LOOKUP_INTERVAL_MS = 10_000
/** Holders one provider lookup may add. */
export const MAX_PROVIDERS_PER_LOOKUP = 20
/** A peer that sent a bad block is ignored this long. */
export const BAN_MS = 10 * 60_000
/** An idle download keeps its sessions this long for the next read. */
export const DOWNLOAD_LINGER_MS = 10_000
/** A download that has found no holder for this long fails with NoProvidersError (the default of content.noHoldersTimeoutMs). */
export const NO_HOLDERS_TIMEOUT_MS = 30_000
/**
 * Requests one download keeps outstanding across all its holders (bytes in flight: this many
 * blocks). Below it, the download's window is the sum of its holders' windows, so it grows with
 * holders: eight holders at their largest window fill it.
 */
export const MAX_BLOCKS_IN_FLIGHT_PER_DOWNLOAD = 64
/** The end game (asking a second holder for a leaf already requested) starts when this few leaves are missing. */
export const ENDGAME_MAX_MISSING = 4
/** Peers asked for the same leaf at once in the end game. */
export const ENDGAME_MAX_REQUESTERS = 2
/** Holders links may name for one download (probed beside connected peers and the DHT's providers). */
export const MAX_HINTED_HOLDERS = 8
/**
 * File bytes one download takes over relayed (limited) connections: a file larger than this waits
 * for a direct connection to a holder. Relayed bytes are the relay operator's cost, and relays
 * other than ours allow 128 KiB a circuit; this fits avatars, thumbnails, feed images, small models.
 */
export const RELAYED_CONTENT_MAX_BYTES = 4 * 1024 * 1024
/** Index bytes (the root and interior nodes) one download takes over relayed connections. */
export const RELAYED_INDEX_MAX_BYTES = 4 * (1024 * 1024 + 128 * 1024)
/** How long a download whose holders are reachable only through relays waits for a direct path (the default). */
export const DIRECT_PATH_TIMEOUT_MS = NO_HOLDERS_TIMEOUT_MS
