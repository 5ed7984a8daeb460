/**
 * The social capability's public face: signed, hash-linked feeds, their replication and the
 * timeline. Build it with `social(init)(components)`; others import social only from here.
 */
import { SocialService, type SocialComponents, type SocialInit } from './service.ts'

export {
  BlockedAuthorError, FEED_TOPIC_PREFIX, feedTopic, MAX_STRANGER_FEEDS, MAX_SYNC_PEERS_PER_ROUND, MAX_TIMELINE_LIMIT,
  SOCIAL_EVENTS, SocialService, SYNC_INTERVAL_MS,
  type FeedEntryEvent, type FeedForkEvent, type FeedNoticeEvent, type SocialComponents, type SocialEvents, type SocialInit, type TimelineEntry
} from './service.ts'
export { FEEDS_PROTOCOL } from './replication.ts'
export {
  Inbox, INBOX_PROTOCOL, inboxKey, InboxUnreachableError, InvalidNoticeError, MAX_INBOX_ENTRIES, MAX_NOTICE_BYTES,
  MAX_NOTICES_PER_PEER_PER_MINUTE, MAX_NOTICES_PER_SENDER_PER_MINUTE, NoticeRateLimitError, NoticeTargetError, NoticeTooLargeError,
  type NoticeResult
} from './inbox.ts'
export { FeedStore, type ForkEvidence } from './store.ts'
export type { Entry, EntryKind, EntryPayload, FeedHead, ProfileBody } from './feed.ts'

/** What other capabilities may ask of social (spaces: whether the user blocked an author). */
export interface SocialView {
  isBlocked: (did: string) => boolean
}

/** The social service from its settings and components (js-libp2p style). */
export function social (init: SocialInit = {}): (components: SocialComponents) => SocialService {
  return components => new SocialService(init, components)
}
