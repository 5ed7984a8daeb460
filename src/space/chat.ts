/**
 * Chat in a space: signed messages, kept on disk by history.ts's rules (the authors the policy
 * names, promoted authors and newcomers each in a part of their own, a fair share each inside it),
 * sealed under the group key in a private space. Every message from gossip passes limits per
 * author, per peer it was signed by, and, for authors the space does not know, an admission proof
 * (admission.ts) and a limit per peer it came through; the history a joiner pulls comes over the
 * sync protocol (sync.ts) with the proofs of the authors it holds them for, and what an answer
 * brings without a proof is kept only in room no proven newcomer needs. Our own messages pass the same
 * per-author limit before they leave, with a margin for jitter on the way, so what `say` reports
 * sent every honest receiver takes; past it `say` refuses with SpaceRateLimitError.
 */
import { TokenBuckets } from '../net/rate-limit.ts'
import { checkAdmission, isAdmitted } from './admission.ts'
import { ExcludedError, SpaceRateLimitError } from './errors.ts'
import { openStored, publishFrame, sealStored } from './frames.ts'
import { ChatHistory, isPrivileged, MAX_CHAT_KEPT, NEWCOMER_PROBATION_MS, PROMOTION_BURST, PROMOTIONS_PER_HOUR, type ChatArea } from './history.ts'
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
/** Authors without a proof one sync answer may bring (their messages are kept only in room no proven newcomer needs). */
export const MAX_SYNC_NEW_AUTHORS = 32

/**
 * Where a record came from: the peer that signed the gossip message (or answered the sync), the
 * one that passed it to us, the author's proof, and (a sync answer) the unproven authors it brought so far.
 */
export interface Source { peer: string, via?: string, proof?: Uint8Array, strangers?: Set<string> }

export interface SpaceChatInit {
  /** How long a newcomer stays on probation (NEWCOMER_PROBATION_MS). */
  probationMs?: number
}

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

  private readonly probationMs: number

  constructor (core: SpaceCore, init: SpaceChatInit = {}) {
    this.core = core
    this.probationMs = init.probationMs ?? NEWCOMER_PROBATION_MS
  }

  /** Whether the space knows `did`: named by the policy, or an author of its kept history. */
  known (j: Joined, did: string): boolean {
    return isPrivileged(j.d, j.policy, did) || j.chat.knows(did)
  }

  /**
   * Loads the stored history of a space we open (opened with the group key in a private space),
   * each record in the part the policy gives it now: an author it names is moved to `named`, one it
   * no longer names to `known`.
   */
  async replay (j: Joined): Promise<void> {
    const id = j.d.id
    const proofs = await this.core.store.proofs(id)
    for (const { area: stored, bytes } of await this.core.store.chat(id)) {
      try {
        const chat = verifyChat(openStored(j, bytes), id, Number.MAX_SAFE_INTEGER)
        const area: ChatArea = isPrivileged(j.d, j.policy, chat.author) ? 'named' : stored === 'named' ? 'known' : stored
        if (area !== stored) await this.core.store.moveChat(id, { area: stored, ts: chat.ts, id: chat.id }, area, bytes)
        const { evicted } = j.chat.add(chat, area)
        if (evicted.length > 0) await this.core.store.addChat(id, { area, ts: chat.ts, id: chat.id, bytes }, evicted.map(e => ({ area: e.area, ts: e.chat.ts, id: e.chat.id })))
      } catch {}
    }
    const forget: string[] = []
    for (const [did, proof] of proofs) {
      if (j.chat.holds(did) && isAdmitted(id, did, proof)) j.chat.setProof(did, proof)
      else forget.push(did)
    }
    if (forget.length > 0) await this.core.store.forgetProofs(id, forget)
  }

  async say (j: Joined, text: string): Promise<ChatView> {
    const id = j.d.id
    checkActive(this.core, j)
    if (j.policy.muted.includes(this.core.did)) throw new ExcludedError('the owner has muted you in this space')
    if (!this.sendBuckets.take(id)) {
      throw new SpaceRateLimitError(`not sent: receivers take ${CHAT_BURST - CHAT_SEND_MARGIN} messages at once, then ${CHAT_PER_SECOND} a second (try again in ${this.sendBuckets.wait(id)} ms)`)
    }
    const chat = await createChat(this.core.key, id, text)
    await this.keep(j, chat, isPrivileged(j.d, j.policy, this.core.did) ? 'named' : 'known', true, j.admission)
    this.core.emit('space:chat', { space: id, ...chatView(chat) })
    await publishFrame(this.core.gossip, j, { t: 'chat', d: chat.bytes })
    return chatView(chat)
  }

  /** The newest `limit` messages, without those of authors the policy now mutes or bans, or `hidden` says the user hides (blocks). */
  list (j: Joined, limit = MAX_CHAT_KEPT, hidden: (did: string) => boolean = () => false): ChatView[] {
    const n = Math.max(1, Math.min(limit, MAX_CHAT_KEPT))
    return j.chat.messages.filter(c => !j.policy.muted.includes(c.author) && !j.policy.banned.includes(c.author) && !hidden(c.author)).slice(-n).map(chatView)
  }

  /**
   * A chat record from gossip (`src` says from where) or a sync answer (`synced`: no rate limits;
   * `src.proof` the author's proof the answer carried, `src.strangers` the unproven authors this
   * answer brought so far). Each message goes to its part (history.ts): `named` for the authors
   * the policy names, `known` for those we promoted, `new` for newcomers with a valid proof,
   * `unproven` for a sync answer's authors without one, from at most MAX_SYNC_NEW_AUTHORS authors
   * an answer (the rest ignored). An author the policy keeps out or mutes is refused
   * (ExcludedError) from gossip, and ignored in a sync answer.
   */
  async take (j: Joined, bytes: Uint8Array, synced: boolean, now: number, src?: Source): Promise<void> {
    const id = j.d.id
    const chat = verifyChat(bytes, id, now)
    const author = chat.author
    const excluded = isExcluded(j.d, j.policy, author, now)
    if (excluded || j.policy.muted.includes(author)) {
      // A sync answer may hold what its peer kept from before the policy, or holds an older policy: ignored, no one's fault.
      if (synced) return
      throw new ExcludedError(excluded ? `${author} is kept out of ${id}` : `${author} is muted in ${id}`)
    }
    if (j.chat.ids.has(chat.id)) return
    const named = isPrivileged(j.d, j.policy, author)
    let area: ChatArea = named ? 'named' : j.chat.knows(author) ? 'known' : 'new'
    let proof: Uint8Array | undefined
    if (!synced && src != null) {
      if (!this.peerBuckets.take(`${id}/${src.peer}`, 1, now)) throw new SpaceRateLimitError(`peer ${src.peer} signs more than ${CHAT_PER_PEER_PER_SECOND} chat messages a second (this one by ${author})`)
      if (area === 'new') {
        checkAdmission(id, author, src.proof)
        proof = src.proof
        const via = src.via ?? src.peer
        if (!this.newcomerBuckets.take(`${id}/${via}`, 1, now)) throw new SpaceRateLimitError(`more than ${NEWCOMER_CHAT_PER_SECOND} chat messages a second from newcomers through ${via} (this one by ${author})`)
        if (j.chat.heard(author, now, () => this.promotions.take(id, 1, now), this.probationMs)) area = 'known'
      }
      if (!this.buckets.take(`${id}/${author}`, 1, now)) throw new SpaceRateLimitError(`${author} sends more than ${CHAT_PER_SECOND} chat messages a second`)
    } else if (area === 'new' && j.chat.proofOf(author) == null) {
      if (src?.proof != null && isAdmitted(id, author, src.proof)) proof = src.proof
      else {
        area = 'unproven'
        const strangers = src?.strangers
        if (strangers != null && !strangers.has(author)) {
          if (strangers.size >= MAX_SYNC_NEW_AUTHORS) return
          strangers.add(author)
        }
      }
    }
    // A known author's proof we lack, kept to pass on to joiners (one hash, once).
    if (!named && proof == null && src?.proof != null && j.chat.proofOf(author) == null && isAdmitted(id, author, src.proof)) proof = src.proof
    // Not kept (older than all of its part we keep): nothing to store or show.
    if (!await this.keep(j, chat, area, false, named ? undefined : proof)) return
    this.core.emit('space:chat', { space: id, ...chatView(chat) })
  }

  /** Adds a message to the history and the store (sealed in a private space), deleting what it evicted and the proofs of authors no longer kept. */
  private async keep (j: Joined, chat: Chat, area: ChatArea, sync: boolean, proof?: Uint8Array): Promise<boolean> {
    const fresh = proof != null && j.chat.proofOf(chat.author) == null
    if (fresh) j.chat.setProof(chat.author, proof)
    const { added, evicted } = j.chat.add(chat, area)
    if (!added) return false
    const forget = [...new Set(evicted.map(e => e.chat.author))].filter(did => !j.chat.holds(did))
    await this.core.store.addChat(j.d.id, { area, ts: chat.ts, id: chat.id, bytes: sealStored(j, chat.bytes) },
      evicted.map(e => ({ area: e.area, ts: e.chat.ts, id: e.chat.id })), sync,
      { keep: fresh ? { did: chat.author, proof } : undefined, forget })
    return true
  }
}

export { ChatHistory, type ChatView }
