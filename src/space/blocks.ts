/**
 * The user's own blocks, as spaces apply them: a member the user blocked (social's block list,
 * read through `isBlocked`) is out of sight in every space. Their chat is left out of what the
 * user reads and no 'space:chat' goes out for it; their presence is left out of the members list,
 * the member count and 'space:presence'; a block of someone present sends 'space:leave' for them
 * at once, and an unblock sends their held presence at once.
 *
 * A block hides; it does not cut. The blocked member's chat is still verified, kept and served to
 * peers that sync, and their presence still tracked, because other members have not blocked them:
 * what this peer passes on stays whole for everyone else, and an unblock shows the kept history and
 * the member where they stand now without waiting for anything. (The owner's policy is different:
 * a mute or ban is for every honest peer, and those peers drop the records, chat.ts and streams.ts.)
 *
 * The block list may change by any route (API, CLI, another capability), so the list is read, not
 * told: each tick (every MOVING_INTERVAL_MS / 2) compares it with what the user was last shown of
 * each member, a set lookup per member of the roster (MAX_ROSTER_MEMBERS at most).
 */
import type { Joined, SpaceCore, SpaceEvents } from './joined.ts'
import { viewOf } from './presence.ts'

/** What spaces read of the social capability: whether the user blocked an author. */
export interface SpaceSocial {
  isBlocked: (did: string) => boolean
}

export class SpaceBlocks {
  private readonly core: SpaceCore
  private readonly social?: SpaceSocial
  /** Members the user is shown now, by space: 'space:presence' went out for them, and no 'space:leave' since. */
  private readonly shown = new Map<string, Set<string>>()

  constructor (core: SpaceCore, social?: SpaceSocial) {
    this.core = core
    this.social = social
  }

  /** Whether the user blocked `did`. */
  blocks (did: string): boolean {
    return did !== this.core.did && this.social?.isBlocked(did) === true
  }

  /** Whether an event is for the user's eyes: false for a blocked member's chat or presence. */
  passes<K extends keyof SpaceEvents> (type: K, detail: SpaceEvents[K]['detail']): boolean {
    if (this.social == null) return true
    if (type === 'space:chat') return !this.blocks((detail as SpaceEvents['space:chat']['detail']).author)
    if (type === 'space:presence') {
      const { space, did } = detail as SpaceEvents['space:presence']['detail']
      if (this.blocks(did)) return false
      this.shownIn(space).add(did)
    } else if (type === 'space:leave') {
      const { space, did } = detail as SpaceEvents['space:leave']['detail']
      this.shown.get(space)?.delete(did)
    }
    return true
  }

  /**
   * Catches up with the block list for one space: 'space:leave' for a member shown and blocked
   * since, their presence at once for a member held back and unblocked since.
   */
  refresh (j: Joined): void {
    if (this.social == null) return
    const id = j.d.id
    const shown = this.shownIn(id)
    for (const did of shown) if (!j.presence.members.has(did)) shown.delete(did)
    for (const m of j.presence.members.values()) {
      const blocked = this.blocks(m.did)
      if (blocked && shown.has(m.did)) this.core.emit('space:leave', { space: id, did: m.did })
      else if (!blocked && !shown.has(m.did)) this.core.emit('space:presence', { space: id, ...viewOf(m) })
    }
  }

  /** Forgets the spaces we are no longer in. */
  retain (joined: Map<string, Joined>): void {
    for (const id of this.shown.keys()) if (!joined.has(id)) this.shown.delete(id)
  }

  /** The members of a space the user may see. */
  visible<T extends { did: string }> (members: T[]): T[] {
    return this.social == null ? members : members.filter(m => !this.blocks(m.did))
  }

  /** How many of a space's members (ourselves included) the user may see. */
  count (j: Joined): number {
    let n = j.presence.members.size + 1
    if (this.social != null) for (const did of j.presence.members.keys()) if (this.blocks(did)) n--
    return n
  }

  private shownIn (id: string): Set<string> {
    let set = this.shown.get(id)
    if (set == null) { set = new Set(); this.shown.set(id, set) }
    return set
  }
}
