/**
 * Chat in a space: signed messages, kept on disk as the newest MAX_CHAT_HISTORY in (ts, id) order,
 * rate-limited per author, dropped when the policy mutes or bans the author. The history a joiner
 * pulls comes over the sync protocol (sync.ts); new messages over the space's gossip.
 */
import { TokenBuckets } from '../net/rate-limit.ts'
import { ExcludedError, SpaceRateLimitError } from './errors.ts'
import { publishFrame } from './frames.ts'
import { checkActive, ChatLog, type ChatView, type Joined, type SpaceCore } from './joined.ts'
import { createChat, isExcluded, verifyChat, type Chat } from './records.ts'
import { MAX_CHAT_HISTORY } from './store.ts'

/** Chat messages per author per second, and burst. */
export const CHAT_PER_SECOND = 2
export const CHAT_BURST = 10

export function chatView (c: Chat): ChatView {
  return { id: c.id, author: c.author, text: c.text, ts: c.ts }
}


export class SpaceChat {
  private readonly core: SpaceCore
  private readonly buckets = new TokenBuckets(CHAT_PER_SECOND, CHAT_BURST)

  constructor (core: SpaceCore) {
    this.core = core
  }

  /** Loads the stored history of a space we open. */
  async replay (j: Joined): Promise<void> {
    for (const bytes of await this.core.store.chat(j.d.id)) {
      try { j.chat.add(verifyChat(bytes, j.d.id, Number.MAX_SAFE_INTEGER)) } catch {}
    }
  }

  async say (j: Joined, text: string): Promise<ChatView> {
    const id = j.d.id
    checkActive(this.core, j)
    if (j.policy.muted.includes(this.core.did)) throw new ExcludedError('the owner has muted you in this space')
    const chat = await createChat(this.core.key, id, text)
    await this.core.store.addChat(id, chat.ts, chat.id, chat.bytes, true)
    j.chat.add(chat)
    this.core.emit('space:chat', { space: id, ...chatView(chat) })
    await publishFrame(this.core.gossip, j, { t: 'chat', d: chat.bytes })
    return chatView(chat)
  }

  /** The newest `limit` messages, without those of authors the policy now mutes or bans. */
  list (j: Joined, limit = MAX_CHAT_HISTORY): ChatView[] {
    const n = Math.max(1, Math.min(limit, MAX_CHAT_HISTORY))
    return j.chat.messages.filter(c => !j.policy.muted.includes(c.author) && !j.policy.banned.includes(c.author)).slice(-n).map(chatView)
  }

  /** A chat record from gossip or a sync answer (`synced`: not rate-limited). */
  async take (j: Joined, bytes: Uint8Array, synced: boolean, now: number): Promise<void> {
    const id = j.d.id
    const chat = verifyChat(bytes, id, now)
    if (isExcluded(j.d, j.policy, chat.author, now)) throw new ExcludedError(`${chat.author} is kept out of ${id}`)
    if (j.policy.muted.includes(chat.author)) throw new ExcludedError(`${chat.author} is muted in ${id}`)
    if (j.chat.ids.has(chat.id)) return
    if (!synced && !this.buckets.take(`${id}/${chat.author}`)) throw new SpaceRateLimitError(`${chat.author} sends more than ${CHAT_PER_SECOND} chat messages a second`)
    // Older than the whole history we keep: nothing to store or show.
    if (!j.chat.add(chat)) return
    await this.core.store.addChat(id, chat.ts, chat.id, chat.bytes)
    this.core.emit('space:chat', { space: id, ...chatView(chat) })
  }
}

export { ChatLog, type ChatView }
