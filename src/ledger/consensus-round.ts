/**
 * One round's messages and their tallies, for the consensus state machine (consensus.ts): who
 * proposed what, each validator's first vote and its conflicting ones, and the power behind each
 * value. Plain data and pure functions over it; the machine decides which rule fires.
 */
import { MAX_VALUES_PER_VOTER, type Input, type Proposal, type Vote } from './consensus-types.ts'

// ---------------------------------------------------------------- the state machine

export const NIL = '' // tally key of nil: values are non-empty strings

/** total and firstByValue count each validator's first vote; byValue adds conflicting votes (departure 8). */
export interface Tally { total: number, byValue: Map<string, number>, firstByValue: Map<string, number> }

export interface RoundData {
  proposals: Array<{ proposal: Proposal, valid: boolean }>
  /** Each validator's first vote: it alone counts toward the totals. */
  votes: { prevote: Map<string, Vote>, precommit: Map<string, Vote> }
  /** Its later, conflicting votes that count toward their own values (departure 8). */
  extra: { prevote: Map<string, Vote[]>, precommit: Map<string, Vote[]> }
  tally: { prevote: Tally, precommit: Tally }
  /** Validator -> number of its messages in this round (L55 counts senders, eviction needs them). */
  senders: Map<string, number>
  senderPower: number
}

export const newRound = (): RoundData => ({
  proposals: [],
  votes: { prevote: new Map(), precommit: new Map() },
  extra: { prevote: new Map(), precommit: new Map() },
  tally: { prevote: { total: 0, byValue: new Map(), firstByValue: new Map() }, precommit: { total: 0, byValue: new Map(), firstByValue: new Map() } },
  senders: new Map(),
  senderPower: 0
})


/** Counts one more message of `id` in the round (its power once, however many it sent). */
export function addSender (rd: RoundData, id: string, powers: ReadonlyMap<string, number>): void {
  const n = rd.senders.get(id) ?? 0
  rd.senders.set(id, n + 1)
  if (n === 0) rd.senderPower += powers.get(id) ?? 0
}

/**
 * Counts a vote: a validator's first vote in the totals and toward its value; a later,
 * different one toward its own value only, if that is nil or has a proposal kept in this round,
 * or more than 1/3 of `total` in first votes, up to MAX_VALUES_PER_VOTER values (departure 8).
 * Returns whether it was counted.
 */
export function addVote (rd: RoundData, vote: Vote, powers: ReadonlyMap<string, number>, total: number): boolean {
  const power = powers.get(vote.validator)
  if (power === undefined) return false
  const t = rd.tally[vote.type]
  const key = vote.value ?? NIL
  const first = rd.votes[vote.type].get(vote.validator)
  if (first === undefined) {
    rd.votes[vote.type].set(vote.validator, vote)
    t.total += power
    t.firstByValue.set(key, (t.firstByValue.get(key) ?? 0) + power)
    addSender(rd, vote.validator, powers)
  } else {
    const extras = rd.extra[vote.type].get(vote.validator) ?? []
    if (first.value === vote.value || extras.some(v => v.value === vote.value)) return false
    if (extras.length + 1 >= MAX_VALUES_PER_VOTER) return false
    // Only where it can matter: equivocators hold less than 1/3, so any quorum for a value has
    // more than 1/3 in first votes; and L36/L49 need a proposal. Others come again by gossip.
    const relevant = vote.value === null || rd.proposals.some(e => e.proposal.value === vote.value) || 3 * (t.firstByValue.get(key) ?? 0) > total
    if (!relevant) return false
    extras.push(vote)
    rd.extra[vote.type].set(vote.validator, extras)
  }
  t.byValue.set(key, (t.byValue.get(key) ?? 0) + power)
  return true
}

export function subtract (m: Map<string, number>, key: string, power: number): void {
  const left = (m.get(key) ?? 0) - power
  if (left === 0) m.delete(key)
  else m.set(key, left)
}

export function structuredCloneInput (i: Input): Input {
  switch (i.type) {
    case 'proposal': return { type: 'proposal', proposal: { ...i.proposal }, valid: i.valid }
    case 'vote': return { type: 'vote', vote: { ...i.vote } }
    default: return { ...i }
  }
}
