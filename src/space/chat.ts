/**
 * Chat in a space: signed messages, kept on disk by history.ts's rules (known authors apart from
 * newcomers, a fair share each), sealed under the group key in a private space. Every message
 * from gossip passes limits per author, per peer it was signed by, and, for authors the space
 * does not know, an admission proof (admission.ts) and a limit per peer it came through; the
 * history a joiner pulls comes over the sync protocol (sync.ts). Our own messages pass the same
 * per-author limit before they leave, with a margin for jitter on the way, so what `say` reports
 * sent every honest receiver takes; past it `say` refuses with SpaceRateLimitError.
 */
import { TokenBuckets } from '../net/rate-limit.ts'
import { checkAdmission } from './admission.ts'
import { ExcludedError, SpaceRateLimitError } from './errors.ts'
import { openStored, publishFrame, sealStored } from './frames.ts'
import { ChatHistory, isPrivileged, MAX_CHAT_HISTORY, MAX_NEWCOMER_CHAT, PROMOTION_BURST, PROMOTIONS_PER_HOUR, type ChatArea } from './history.ts'
import { checkActive, type ChatView, type Joined, type SpaceCore } from './joined.ts'
import { createChat, isExcluded, verifyChat, type Chat } from './records.ts'

/** Chat messages per author per second, and burst (what every receiver takes). */
export const CHAT_PER_SECOND = 2
export const CHAT_BURST = 10
/** Of CHAT_BURST, the tokens our own peer keeps in hand, so delays on the way never bunch our messages past a receiver's limit. */
export const CHAT_SEND_MARGIN = 2
/** Chat messages per signing peer per second (any authors), and burst. */
export const CHAT_PER_PEER_PER_SECOND = 4
export const CHAT_PEER_BURST = 20
/** Newcomers' chat messages per space and per peer they came through, per second, and burst. */
export const NEWCOMER_CHAT_PER_SECOND = 5
export const NEWCOMER_CHAT_BURST = 20

/** Where a record from gossip came from: the peer that signed the gossip message, the one that passed it to us, the author's proof. */
export interface Source { peer: string, via?: string, proof?: Uint8Array }

export function chatView (c: Chat): ChatView {
  return { id: c.id, author: c.author, text: c.text, ts: c.ts }
}

export class SpaceChat {
  private readonly core: SpaceCore
  private readonly buckets = new TokenBuckets(CHAT_PER_SECOND, CHAT_BURST)
  private readonly sendBuckets = new TokenBuckets(CHAT_PER_SECOND, CHAT_BURST - CHAT_SEND_MARGIN)
  private readonly peerBuckets = new TokenBuckets(CHAT_PER_PEER_PER_SECOND, CHAT_PEER_BURST)
  private readonly newcomerBuckets = new TokenBuckets(NEWCOMER_CHAT_PER_SECOND, NEWCOMER_CHAT_BURST)
  private readonly promotions = new TokenBuckets(PROMOTIONS_PER_HOUR / 3600, PROMOTION_BURST)

  constructor (core: SpaceCore) {
    this.core = core
  }

  /** Whether the space knows `did`: named by the policy, or an author of its kept history. */
  known (j: Joined, did: string): boolean {
    return isPrivileged(j.d, j.policy, did) || j.chat.knows(did)
  }

  /** Loads the stored history of a space we open (opened with the group key in a private space). */
  async replay (j: Joined): Promise<void> {
    for (const { area, bytes } of await this.core.store.chat(j.d.id)) {
      try { j.chat.add(verifyChat(openStored(j, bytes), j.d.id, Number.MAX_SAFE_INTEGER), area) } catch {}
    }
  }

  async say (j: Joined, text: string): Promise<ChatView> {
    const id = j.d.id
    checkActive(this.core, j)
    if (j.policy.muted.includes(this.core.did)) throw new ExcludedError('the owner has muted you in this space')
    if (!this.sendBuckets.take(id)) {
      throw new SpaceRateLimitError(`not sent: receivers take ${CHAT_BURST - CHAT_SEND_MARGIN} messages at once, then ${CHAT_PER_SECOND} a second (try again in ${this.sendBuckets.wait(id)} ms)`)
    }
    const chat = await createChat(this.core.key, id, text)
    await this.keep(j, chat, 'known', true)
    this.core.emit('space:chat', { space: id, ...chatView(chat) })
    await publishFrame(this.core.gossip, j, { t: 'chat', d: chat.bytes })
    return chatView(chat)
  }

  /** The newest `limit` messages, without those of authors the policy now mutes or bans. */
  list (j: Joined, limit = MAX_CHAT_HISTORY + MAX_NEWCOMER_CHAT): ChatView[] {
    const n = Math.max(1, Math.min(limit, MAX_CHAT_HISTORY + MAX_NEWCOMER_CHAT))
    return j.chat.messages.filter(c => !j.policy.muted.includes(c.author) && !j.policy.banned.includes(c.author)).slice(-n).map(chatView)
  }

  /** A chat record from gossip (`src` says from where) or a sync answer (`synced`: no rate limits, no proof; unknown authors are newcomers). */
  async take (j: Joined, bytes: Uint8Array, synced: boolean, now: number, src?: Source): Promise<void> {
    const id = j.d.id
    const chat = verifyChat(bytes, id, now)
    const author = chat.author
    if (isExcluded(j.d, j.policy, author, now)) throw new ExcludedError(`${author} is kept out of ${id}`)
    if (j.policy.muted.includes(author)) throw new ExcludedError(`${author} is muted in ${id}`)
    if (j.chat.ids.has(chat.id)) return
    let area: ChatArea = this.known(j, author) ? 'known' : 'new'
    if (!synced && src != null) {
      if (!this.peerBuckets.take(`${id}/${src.peer}`, 1, now)) throw new SpaceRateLimitError(`peer ${src.peer} signs more than ${CHAT_PER_PEER_PER_SECOND} chat messages a second (this one by ${author})`)
      if (area === 'new') {
        checkAdmission(id, author, src.proof)
        const via = src.via ?? src.peer
        if (!this.newcomerBuckets.take(`${id}/${via}`, 1, now)) throw new SpaceRateLimitError(`more than ${NEWCOMER_CHAT_PER_SECOND} chat messages a second from newcomers through ${via} (this one by ${author})`)
        if (j.chat.heard(author, now, () => this.promotions.take(id, 1, now))) area = 'known'
      }
      if (!this.buckets.take(`${id}/${author}`, 1, now)) throw new SpaceRateLimitError(`${author} sends more than ${CHAT_PER_SECOND} chat messages a second`)
    }
    // Not kept (older than all of its part we keep): nothing to store or show.
    if (!await this.keep(j, chat, area, false)) return
    this.core.emit('space:chat', { space: id, ...chatView(chat) })
  }

  /** Adds a message to the history and the store (sealed in a private space), deleting what it evicted. */
  private async keep (j: Joined, chat: Chat, area: ChatArea, sync: boolean): Promise<boolean> {
    const { added, evicted } = j.chat.add(chat, area)
    if (!added) return false
    await this.core.store.addChat(j.d.id, { area, ts: chat.ts, id: chat.id, bytes: sealStored(j, chat.bytes) },
      evicted.map(e => ({ area: e.area, ts: e.chat.ts, id: e.chat.id })), sync)
    return true
  }
}

export { ChatHistory, type ChatView }
