/**
 * Who hears whom, as pure functions on plain data: the members within earshot of a listener (the
 * ones it holds voice streams with, by distance, not by presence's near flag, which a member far in
 * the roster's ranking or between frames may lack), and of those the talking
 * ones within hearing range that nothing excludes, nearest first, at most a bound. The service
 * asks for exactly these speakers' audio (WANT) and nobody else's, so what a listener receives
 * stays bounded by its neighbourhood however large the crowd.
 */

/** Beyond this distance (metres) a speaker is not heard. */
export const HEARING_RANGE_M = 30
/** Speakers a listener receives at once, by default: the nearest talking ones. */
export const MAX_HEARD_SPEAKERS = 8
/** A speaker counts as talking this long after its last talking note or frame. */
export const TALKING_HOLD_MS = 1500

export type Position = [number, number, number]

export interface Candidate {
  did: string
  position: Position
  /** When it last was heard talking (ms, the listener's clock; 0: never). */
  talkingAt: number
}

export interface HearingOptions {
  now: number
  max: number
  rangeM: number
  /** Whether a member may not be heard by this listener at all (ban, mutes, blocks). */
  excluded: (did: string) => boolean
}

/** Distance between two positions in metres. */
export function distance (a: Position, b: Position): number {
  return Math.hypot(a[0] - b[0], a[1] - b[1], a[2] - b[2])
}

/** Whether a candidate last talking at `talkingAt` still counts as talking at `now`. */
export function isTalking (talkingAt: number, now: number): boolean {
  return talkingAt > 0 && now - talkingAt < TALKING_HOLD_MS
}

/** The dids this listener should hear: talking, within range, not excluded, nearest first (ties by did), at most `max`. */
export function chooseHeard (me: Position, candidates: readonly Candidate[], options: HearingOptions): string[] {
  const max = Math.max(0, Math.floor(options.max))
  const ranked: Array<{ did: string, d: number }> = []
  const seen = new Set<string>()
  for (const c of candidates) {
    // A did named twice counts once, as its first entry.
    if (seen.has(c.did)) continue
    seen.add(c.did)
    if (!isTalking(c.talkingAt, options.now)) continue
    const d = distance(me, c.position)
    if (!Number.isFinite(d) || d > options.rangeM) continue
    if (options.excluded(c.did)) continue
    ranked.push({ did: c.did, d })
  }
  ranked.sort((a, b) => a.d - b.d || (a.did < b.did ? -1 : a.did > b.did ? 1 : 0))
  return ranked.slice(0, max).map(r => r.did)
}

/** The members within `rangeM` of `me`, nearest first (ties by did), at most `max`: those a listener holds voice streams with. */
export function inEarshot<T extends { did: string, position: Position }> (me: Position, members: readonly T[], rangeM: number, max: number): T[] {
  const ranked: Array<{ m: T, d: number }> = []
  for (const m of members) {
    const d = distance(me, m.position)
    if (Number.isFinite(d) && d <= rangeM) ranked.push({ m, d })
  }
  ranked.sort((a, b) => a.d - b.d || (a.m.did < b.m.did ? -1 : a.m.did > b.m.did ? 1 : 0))
  return ranked.slice(0, Math.max(0, Math.floor(max))).map(r => r.m)
}
