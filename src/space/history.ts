/**
 * A space's chat history as a pure model: which messages a peer keeps, and whose. Authors cost
 * nothing to make, so a history kept as "the newest N" is erased by N messages from N fresh keys.
 * Instead the history has parts, and an author's message only ever evicts messages of its own part:
 *   named     the authors the space's policy names: its owner, editors and members. At most
 *             MAX_CHAT_HISTORY messages. Nobody else ever evicts one of them, whatever their number
 *             or age: erasing them takes the owner's signature (a policy naming the eraser).
 *   known     authors who earned their place: newcomers promoted after a probation (and authors
 *             the policy named once and no longer does). At most MAX_PROMOTED_CHAT messages.
 *   new       newcomers heard with a valid admission proof (admission.ts), kept with it.
 *   unproven  authors we hold no proof of (what a sync answer brings without one). They share
 *             MAX_NEWCOMER_CHAT with `new`, and always go first: an unproven message never evicts a
 *             proven one, and is not kept when the part holds only proven ones.
 * Inside each part the author holding the most loses its oldest (a fair share each), so no author,
 * however chatty, erases another's. A newcomer is promoted when it speaks again
 * NEWCOMER_PROBATION_MS or more after we first heard it, at most PROMOTIONS_PER_HOUR a space (the
 * caller's bucket). What it costs to erase each part: named, not possible without the owner's
 * signature; known, K promoted sybils leave an honest promoted author MAX_PROMOTED_CHAT / (K + 1)
 * (each sybil a proof, a probation, and a promotion at PROMOTION_BURST then PROMOTIONS_PER_HOUR);
 * new, K proofs leave an honest newcomer MAX_NEWCOMER_CHAT / (K + 1).
 * No I/O, no clock: times come in as arguments.
 */
import type { Chat, Descriptor, PolicyPayload } from './records.ts'

/** Messages of the authors the policy names (owner, editors, members) kept per space. */
export const MAX_CHAT_HISTORY = 500
/** Messages of promoted authors kept per space, apart from (and never at the cost of) the named ones. */
export const MAX_PROMOTED_CHAT = 500
/** Messages of newcomers (proven or not) kept per space, apart from (and never at the cost of) the others. */
export const MAX_NEWCOMER_CHAT = 500
/** Every message a space's history holds at most. */
export const MAX_CHAT_KEPT = MAX_CHAT_HISTORY + MAX_PROMOTED_CHAT + MAX_NEWCOMER_CHAT
/** How long after we first heard a newcomer it must speak again to become known. */
export const NEWCOMER_PROBATION_MS = 10 * 60_000
/** Newcomers a space promotes per hour at most, and burst. */
export const PROMOTIONS_PER_HOUR = 60
export const PROMOTION_BURST = 10
/** Newcomers on probation tracked per space (the oldest forgotten first; they start again). */
export const MAX_NEWCOMERS_TRACKED = 4096
/** Promoted authors remembered per space beyond those whose messages we keep. */
export const MAX_PROMOTED = 4096

export type ChatArea = 'named' | 'known' | 'new' | 'unproven'
export const CHAT_AREAS: readonly ChatArea[] = ['named', 'known', 'new', 'unproven']

/** Whether the owner's policy names `did`: the owner, an editor, a member of a private space. */
export function isPrivileged (d: Descriptor, policy: PolicyPayload, did: string): boolean {
  return did === d.owner || policy.editors.includes(did) || policy.members.includes(did)
}

/** What one add did: whether the message is kept, and the messages it pushed out. */
export interface Added { added: boolean, evicted: Array<{ chat: Chat, area: ChatArea }> }

export class ChatHistory {
  /** Every kept message of all parts, in (ts, id) order. */
  readonly messages: Chat[] = []
  readonly ids = new Set<string>()
  private readonly areaOf = new Map<string, ChatArea>()
  /** Messages per author, by part. */
  private readonly counts: Record<ChatArea, Map<string, number>> = { named: new Map(), known: new Map(), new: new Map(), unproven: new Map() }
  private readonly sizes: Record<ChatArea, number> = { named: 0, known: 0, new: 0, unproven: 0 }
  /** Newcomers on probation: did -> when we first heard it. */
  private readonly newcomers = new Map<string, number>()
  private readonly promoted = new Set<string>()
  /** The admission proof of each author we keep messages of outside `named` (sent on in sync answers). */
  private readonly proofs = new Map<string, Uint8Array>()

  /** Messages kept in one part. */
  size (area: ChatArea): number { return this.sizes[area] }

  /** Messages of `did` kept in one part. */
  countOf (did: string, area: ChatArea): number { return this.counts[area].get(did) ?? 0 }

  /** Whether `did` is a known author by what this history holds (the caller adds the policy's). */
  knows (did: string): boolean {
    return this.counts.known.has(did) || this.counts.named.has(did) || this.promoted.has(did)
  }

  /** The admission proof we hold for `did`. */
  proofOf (did: string): Uint8Array | undefined { return this.proofs.get(did) }

  /** Keeps `did`'s admission proof (checked by the caller) while we keep messages of it. */
  setProof (did: string, proof: Uint8Array): void { this.proofs.set(did, proof) }

  /** Whether we keep any message of `did`. */
  holds (did: string): boolean {
    return CHAT_AREAS.some(a => this.counts[a].has(did))
  }

  /**
   * A newcomer heard (with a valid proof) at `now`: true when it is promoted now (it spoke again
   * after its probation and `mayPromote` grants one), false while on probation.
   */
  heard (did: string, now: number, mayPromote: () => boolean, probationMs = NEWCOMER_PROBATION_MS): boolean {
    const first = this.newcomers.get(did)
    if (first == null) {
      if (this.newcomers.size >= MAX_NEWCOMERS_TRACKED) this.newcomers.delete(this.newcomers.keys().next().value as string)
      this.newcomers.set(did, now)
      return false
    }
    if (now - first < probationMs || !mayPromote()) return false
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
    if (area === 'named' || area === 'known') {
      const bound = area === 'named' ? MAX_CHAT_HISTORY : MAX_PROMOTED_CHAT
      while (this.sizes[area] > bound) evicted.push(this.evictOne(area))
    } else {
      // Newcomers share one bound; the unproven go first, so they never cost a proven one.
      while (this.sizes.new + this.sizes.unproven > MAX_NEWCOMER_CHAT) evicted.push(this.evictOne(this.sizes.unproven > 0 ? 'unproven' : 'new'))
    }
    for (const e of evicted) if (!this.holds(e.chat.author)) this.proofs.delete(e.chat.author)
    return { added: !evicted.some(e => e.chat.id === chat.id), evicted: evicted.filter(e => e.chat.id !== chat.id) }
  }

  /** Which part a kept message is in. */
  area (id: string): ChatArea | undefined { return this.areaOf.get(id) }

  /** Removes the oldest message of the author holding the most in `area` (ties: the older message goes). */
  private evictOne (area: ChatArea): { chat: Chat, area: ChatArea } {
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
    return { chat: victim, area }
  }
}

function before (a: Chat, b: Chat): boolean {
  return a.ts < b.ts || (a.ts === b.ts && a.id < b.id)
}
