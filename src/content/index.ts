/**
 * The content capability's public face: content-addressed files and directories over the local
 * block store and the swarm (and Bitswap, for IPFS programs). Build it with `content(init)(components)`; others import content only
 * from here. The block store on disk (blockstore.ts, Node-only) is opened by the node and passed in
 * as a component.
 */
import { ContentService, type ContentComponents, type ContentInit } from './service.ts'

export {
  CONTENT_EVENTS, ContentService, MAX_ABANDONED_LISTED, MAX_CONCURRENT_PROVIDES, MAX_FETCH_DEPTH,
  MAX_FETCH_ENTRIES, MAX_UNFOUND_DOWNLOAD_AGE_MS, MAX_UNFOUND_DOWNLOAD_ATTEMPTS, PROVIDE_TIMEOUT_MS,
  type AbandonedDownload, type CatOptions, type ContentComponents, type ContentEvents, type ContentInit, type ContentSource, type ContentStat,
  type ContentStatus, type FetchOptions, type FetchProgress
} from './service.ts'
export {
  DIRECT_PATH_TIMEOUT_MS, DirectPathPendingError, NoProvidersError, RELAYED_CONTENT_MAX_BYTES, RELAYED_INDEX_MAX_BYTES, type DirectPath
} from './swarm.ts'
export {
  BITSWAP_120, BITSWAP_MAX_MESSAGE_BYTES, BITSWAP_MAX_STREAMS_PER_CONNECTION, BITSWAP_MAX_WANTLIST_ENTRIES, BITSWAP_PROTOCOLS,
  BITSWAP_WANTS_PER_PEER_PER_SECOND, BitswapMessageTooLargeError, BitswapProtocolError, BitswapRateLimitError, BitswapWantlistFullError
} from './bitswap.ts'
export { IMPORT_IDLE_MS, InvalidImportError, MAX_OPEN_IMPORTS } from './imports.ts'
export {
  BlockNotFoundError, BlockTooLargeError, DiskFullError, InvalidCidError, MAX_BLOCK_BYTES, parseCid, StoreFullError,
  type ContentBlockstore, type DownloadRecord, type PinInfo, type SweepResult
} from './blocks.ts'
export type { DirEntry, ResolvedPath } from './directory.ts'
export { contentRangeHeader, parseRange, RangeNotSatisfiableError, unsatisfiedRangeHeader } from './http-range.ts'
export { contentType, SNIFF_BYTES } from './mime.ts'
export type { ImportResult } from './unixfs.ts'

/** What other capabilities may ask of content: whether a peer is banned, whether a block is here. */
export interface ContentView {
  isBanned: (peer: string) => boolean
  has: ContentService['has']
}

/** The content service from its settings and components (js-libp2p style). */
export function content (init: ContentInit = {}): (components: ContentComponents) => ContentService {
  return components => new ContentService(init, components)
}
