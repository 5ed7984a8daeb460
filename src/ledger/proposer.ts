/**
 * Who proposes at (height, round): CometBFT's weighted round-robin, derived from the validator
 * set alone so every node agrees with no priority state to store. Pure; schedules are cached per
 * validator set because the consensus asks at every round.
 */
import { checkInt, checkValidators, PROPOSER_RESOLUTION, type Validator } from './consensus-types.ts'

const gcd = (a: number, b: number): number => { while (b !== 0) [a, b] = [b, a % b]; return a }

/**
 * One period of CometBFT's weighted round-robin (spec/consensus/proposer-selection.md), from all
 * priorities at zero: each slot every validator's priority grows by its power, the highest (ties:
 * the smallest id) proposes and drops by the total. Starting from zero the priorities sum to
 * zero, so CometBFT's centering is a no-op and they stay within (-P, P], under its rescaling
 * threshold; so for a fixed set this is CometBFT's sequence. After P slots every priority is back
 * at zero, each validator having proposed exactly power times: the sequence has period P. Powers
 * are first divided by their gcd and, above PROPOSER_RESOLUTION, scaled down (at least 1 each) so
 * a period stays short; the sequence is then fair to within 1/PROPOSER_RESOLUTION of the power.
 */
function buildSchedule (validators: readonly Validator[], total: number): string[] {
  const sorted = [...validators].sort((a, b) => a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
  let weights = total > PROPOSER_RESOLUTION
    ? sorted.map(v => Math.max(1, Number(BigInt(v.power) * BigInt(PROPOSER_RESOLUTION) / BigInt(total))))
    : sorted.map(v => v.power)
  const g = weights.reduce(gcd)
  weights = weights.map(w => w / g)
  const period = weights.reduce((a, b) => a + b, 0)
  const priority = new Array<number>(sorted.length).fill(0)
  const schedule = new Array<string>(period)
  for (let k = 0; k < period; k++) {
    let best = 0
    for (let i = 0; i < sorted.length; i++) {
      priority[i] += weights[i]
      if (priority[i] > priority[best]) best = i
    }
    priority[best] -= period
    schedule[k] = sorted[best].id
  }
  return schedule
}

const scheduleCache = new Map<string, string[]>()
const SCHEDULE_CACHE_SIZE = 8

export function scheduleOf (validators: readonly Validator[]): string[] {
  const total = checkValidators(validators)
  const key = validators.map(v => `${v.id}\u0000${v.power}`).sort().join('\u0001')
  let s = scheduleCache.get(key)
  if (s === undefined) {
    s = buildSchedule(validators, total)
    if (scheduleCache.size >= SCHEDULE_CACHE_SIZE) scheduleCache.delete(scheduleCache.keys().next().value as string)
    scheduleCache.set(key, s)
  }
  return s
}

export function pick (schedule: readonly string[], height: number, round: number): string {
  return schedule[((height % schedule.length) + (round % schedule.length)) % schedule.length]
}

/**
 * The proposer of (height, round): slot height + round of the period of CometBFT's weighted
 * round-robin (see buildSchedule), which does not depend on the order of `validators`.
 *
 * CometBFT carries the priorities in the chain state from height to height (incremented once per
 * height and once per round, so its round r of height h is likewise slot h + r) and starts a new
 * validator at -1.125 P so that leaving and rejoining cannot jump the queue. We derive the slot
 * from (height, round) alone, so every node agrees with nothing but the validator set and there is
 * no priority state to store or to get wrong; the price is that a changed set starts a fresh
 * schedule. Over any P consecutive slots of a fixed set each validator proposes exactly its
 * (scaled) power times, and no validator holds two slots in a row unless its power exceeds 1/2.
 */
export function proposer (validators: Validator[], height: number, round: number): string {
  checkInt(height, 'height', 0)
  checkInt(round, 'round', 0)
  return pick(scheduleOf(validators), height, round)
}
