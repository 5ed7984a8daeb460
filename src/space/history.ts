/**
 * A space's chat history as a pure model: which messages a peer keeps, and whose. Authors cost
 * nothing to make, so a history kept as "the newest N" is erased by N messages from N fresh keys.
 * Instead the history has two parts:
 *   known     authors the space knows: its owner, editors and members, authors whose messages we
 *             keep there already, and newcomers promoted after a probation. At most
 *             MAX_CHAT_HISTORY messages; past it the author holding the most loses its oldest
 *             (a fair share each), so no author, however chatty, erases another's.
 *   newcomers everyone else, at most MAX_NEWCOMER_CHAT messages, with the same fair share among
 *             them. A newcomer's message never evicts a known author's.
 * A newcomer (heard over gossip with a valid admission proof, admission.ts) is promoted when it
 * speaks again NEWCOMER_PROBATION_MS or more after we first heard it, at most PROMOTIONS_PER_HOUR
 * a space (the caller's bucket): from then on its messages go to the known part.
 * No I/O, no clock: times come in as arguments.
 */
import type { Chat, Descriptor, PolicyPayload } from './records.ts'

/** Messages of known authors kept per space. */
export const MAX_CHAT_HISTORY = 500
/** Messages of newcomers kept per space, apart from (and never at the cost of) the known ones. */
export const MAX_NEWCOMER_CHAT = 500
/** How long after we first heard a newcomer it must speak again to become known. */
export const NEWCOMER_PROBATION_MS = 10 * 60_000
/** Newcomers a space promotes per hour at most, and burst. */
export const PROMOTIONS_PER_HOUR = 60
export const PROMOTION_BURST = 10
/** Newcomers on probation tracked per space (the oldest forgotten first; they start again). */
export const MAX_NEWCOMERS_TRACKED = 4096
/** Promoted authors remembered per space beyond those whose messages we keep. */
export const MAX_PROMOTED = 4096

export type ChatArea = 'known' | 'new'

/** Whether the owner's policy names `did`: the owner, an editor, a member of a private space. */
export function isPrivileged (d: Descriptor, policy: PolicyPayload, did: string): boolean {
  return did === d.owner || policy.editors.includes(did) || policy.members.includes(did)
}

/** What one add did: whether the message is kept, and the messages it pushed out. */
export interface Added { added: boolean, evicted: Array<{ chat: Chat, area: ChatArea }> }

export class ChatHistory {
  /** Every kept message of both parts, in (ts, id) order. */
  readonly messages: Chat[] = []
  readonly ids = new Set<string>()
  private readonly areaOf = new Map<string, ChatArea>()
  /** Messages per author, by part. */
  private readonly counts: Record<ChatArea, Map<string, number>> = { known: new Map(), new: new Map() }
  private readonly sizes: Record<ChatArea, number> = { known: 0, new: 0 }
  /** Newcomers on probation: did -> when we first heard it. */
  private readonly newcomers = new Map<string, number>()
  private readonly promoted = new Set<string>()

  /** Messages kept in one part. */
  size (area: ChatArea): number { return this.sizes[area] }

  /** Messages of `did` kept in one part. */
  countOf (did: string, area: ChatArea): number { return this.counts[area].get(did) ?? 0 }

  /** Whether `did` is a known author by what this history holds (the caller adds the policy's). */
  knows (did: string): boolean {
    return this.counts.known.has(did) || this.promoted.has(did)
  }

  /**
   * A newcomer heard (with a valid proof) at `now`: true when it is promoted now (it spoke again
   * after its probation and `mayPromote` grants one), false while on probation.
   */
  heard (did: string, now: number, mayPromote: () => boolean): boolean {
    const first = this.newcomers.get(did)
    if (first == null) {
      if (this.newcomers.size >= MAX_NEWCOMERS_TRACKED) this.newcomers.delete(this.newcomers.keys().next().value as string)
      this.newcomers.set(did, now)
      return false
    }
    if (now - first < NEWCOMER_PROBATION_MS || !mayPromote()) return false
    this.newcomers.delete(did)
    if (this.promoted.size >= MAX_PROMOTED) this.promoted.delete(this.promoted.values().next().value as string)
    this.promoted.add(did)
    return true
  }

  /** Adds a message to a part, in (ts, id) order, and evicts past that part's bound. */
  add (chat: Chat, area: ChatArea): Added {
    if (this.ids.has(chat.id)) return { added: false, evicted: [] }
    this.ids.add(chat.id)
    this.areaOf.set(chat.id, area)
    const list = this.messages
    // Most arrive in order, so insert from the end.
    let i = list.length
    while (i > 0 && before(chat, list[i - 1])) i--
    list.splice(i, 0, chat)
    this.sizes[area]++
    this.counts[area].set(chat.author, (this.counts[area].get(chat.author) ?? 0) + 1)
    const evicted: Added['evicted'] = []
    const bound = area === 'known' ? MAX_CHAT_HISTORY : MAX_NEWCOMER_CHAT
    while (this.sizes[area] > bound) evicted.push({ chat: this.evictOne(area), area })
    return { added: !evicted.some(e => e.chat.id === chat.id), evicted: evicted.filter(e => e.chat.id !== chat.id) }
  }

  /** Which part a kept message is in. */
  area (id: string): ChatArea | undefined { return this.areaOf.get(id) }

  /** Removes the oldest message of the author holding the most in `area` (ties: the older message goes). */
  private evictOne (area: ChatArea): Chat {
    let most = 0
    for (const n of this.counts[area].values()) most = Math.max(most, n)
    const k = this.messages.findIndex(c => this.areaOf.get(c.id) === area && this.counts[area].get(c.author) === most)
    const [victim] = this.messages.splice(k, 1)
    this.ids.delete(victim.id)
    this.areaOf.delete(victim.id)
    this.sizes[area]--
    const left = (this.counts[area].get(victim.author) ?? 1) - 1
    if (left === 0) this.counts[area].delete(victim.author)
    else this.counts[area].set(victim.author, left)
    return victim
  }
}

function before (a: Chat, b: Chat): boolean {
  return a.ts < b.ts || (a.ts === b.ts && a.id < b.id)
}
