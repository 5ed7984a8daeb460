/**
 * Tendermint BFT consensus as a pure, synchronous state machine: Algorithm 1 of Buchman, Kwon and
 * Milosevic, "The latest gossip on BFT consensus" (2018), as CometBFT implements it. Line numbers
 * in comments (L22, L36, ...) are the paper's.
 *
 * No I/O, timers, clock or crypto: the ledger service decodes and verifies signed messages, feeds
 * them in as `Input`s and carries out the `Action`s returned (sign and broadcast, arm a timer,
 * build a block, apply a commit). So a whole network of these runs in one test, and a validator's
 * state is plain data that goes to a write-ahead log.
 *
 * Powers: "2f+1" is more than 2/3 of the total voting power, "f+1" more than 1/3.
 *
 * Caller contracts:
 * - Write-ahead log. After any `start`/`step`/`nextHeight` that returned a `propose` or `vote`
 *   action, persist `toJSON()` (synced) BEFORE signing or broadcasting those actions. Every vote
 *   and proposal the machine emits is recorded in its state first, so an instance restored with
 *   `Consensus.fromJSON` never emits a different one for the same (height, round, type). On
 *   restore call `start()`: it re-arms the timeouts of the current round (and repeats a pending
 *   `need-value` or `commit`); `ownMessages()` gives our votes and proposals to gossip again. Never
 *   run two instances with one key, and never restore an older snapshot than the last persisted.
 * - Heights. After `commit`, apply the block, then either call `nextHeight(validators)` with the
 *   next height's validator set or construct a new instance for height + 1 (a CometBFT-style
 *   timeout_commit pause, if wanted, is the caller's timer before that). Messages for height + 1
 *   are buffered meanwhile (bounded, see below) and replayed by `nextHeight`.
 * - Gossip. As in the paper and CometBFT, liveness needs the network layer to deliver every
 *   message a correct validator received to all correct validators (relay), to send a peer the
 *   messages of its height again when it moves to a new height or round or makes no progress for a
 *   while (CometBFT's gossip routines do this continuously), and to answer `need-proposal` by
 *   fetching that proposal from peers. Messages the machine drops (the limits below, conflicting
 *   votes not yet relevant) come back that way.
 * - Inputs keep any extra fields (a vote's signed bytes, say): `commit.precommits` and `evidence`
 *   hold the votes as given, and so does `toJSON()` (encode it with DAG-CBOR if they are binary).
 *
 * Departures from the paper, each commented where it happens:
 * 1. The next height starts on `nextHeight(validators)`, not inside the commit rule (L52-54):
 *    the next validator set comes from executing the block.
 * 2. getValue() is asynchronous (`need-value` / `value-ready`), and the proposer also arms
 *    timeoutPropose (CometBFT does): a slow app then prevotes nil like everyone else.
 * 3. Rules L36 and L49 need the proposal for a value; a byzantine proposer can send many. We keep
 *    MAX_PROPOSALS_PER_ROUND per round plus any backed by more than 1/3 of the power, and ask for a
 *    missing one with `need-proposal` (CometBFT fetches the block of a +2/3 majority it lacks).
 * 4. Bounded memory: messages for rounds beyond round + MAX_FUTURE_ROUNDS are kept only for each
 *    sender's MAX_CATCHUP_ROUNDS highest such rounds (CometBFT's peer catch-up rounds), and
 *    messages for height + 1 only as described at `step`.
 * 5. Upon-rules fire one at a time in a fixed order (commit, round skip, then the current round's
 *    rules) until none is enabled: one of the orders the paper allows.
 * 6. L55 skips to the highest round with f+1 senders, not to any such round.
 * 7. Timeouts grow linearly with the round, timeoutX(r) = X + r * XDelta, CometBFT's defaults.
 * 8. A second, different vote of a validator for one (height, round, type) is reported once as
 *    `evidence` (CometBFT's DuplicateVoteEvidence; the paper has none). Counting follows the
 *    paper, which counts messages: the "any value" totals (L34, L47) and L55 count each validator
 *    once (its first vote), and a conflicting vote counts toward its own value only, and only when
 *    that value is nil, has a proposal kept in that round, or has more than 1/3 of the power in
 *    first votes (every real quorum has: equivocators hold less than 1/3); at most
 *    MAX_VALUES_PER_VOTER values per validator. Others are dropped, to come again by gossip.
 *    Counting first votes alone loses liveness: a correct validator can lock on a value with an
 *    equivocator's vote for it while the others counted that equivocator's other vote; they then
 *    never see the proof of that lock and it never unlocks (our simulator found this). CometBFT
 *    likewise counts a conflicting vote for a block once a peer claims +2/3 for it (VoteSetMaj23).
 * 9. The proposer is a pure function of (validator set, height, round); see `proposer`.
 */

export interface Validator { id: string, power: number }
export interface Proposal { height: number, round: number, polRound: number, value: string, proposer: string }
export type VoteType = 'prevote' | 'precommit'
/** A vote; `value` null is a vote for nil. */
export interface Vote { type: VoteType, height: number, round: number, value: string | null, validator: string }
export type TimeoutStep = 'propose' | 'prevote' | 'precommit'
/** 'commit': decided at this height, waiting for `nextHeight`. */
export type Step = TimeoutStep | 'commit'

export type Input =
  /** A proposal from the network; `valid` is the app's check of the proposed block. */
  | { type: 'proposal', proposal: Proposal, valid: boolean }
  | { type: 'vote', vote: Vote }
  /** A timer armed by a `schedule-timeout` action went off. */
  | { type: 'timeout', step: TimeoutStep, height: number, round: number }
  /** The app built a block for our proposal, answering `need-value`. */
  | { type: 'value-ready', height: number, round: number, value: string }

export type Action =
  /** We are the proposer and have no valid value: build a block and answer `value-ready`. */
  | { type: 'need-value', height: number, round: number }
  /** Persist our state, then sign and broadcast this proposal. */
  | { type: 'propose', proposal: Proposal }
  /** Persist our state, then sign and broadcast this vote. */
  | { type: 'vote', vote: Vote }
  /** Feed `{ type: 'timeout', step, height, round }` back after `ms` milliseconds. */
  | { type: 'schedule-timeout', step: TimeoutStep, height: number, round: number, ms: number }
  /** Decided: `precommits` are more than 2/3 of the power for `value` at `round`. */
  | { type: 'commit', height: number, round: number, value: string, precommits: Vote[] }
  /** A validator signed two different votes for one (height, round, type). */
  | { type: 'evidence', a: Vote, b: Vote }
  /** More than 2/3 voted for a value whose proposal we lack: fetch it from peers, feed it as a `proposal`. */
  | { type: 'need-proposal', height: number, round: number, value: string }

/** Base and per-round growth of each timeout, in milliseconds. */
export interface Timeouts {
  propose: number
  proposeDelta: number
  prevote: number
  prevoteDelta: number
  precommit: number
  precommitDelta: number
}

/** CometBFT's defaults (config.toml timeout_propose, timeout_propose_delta, ...). */
export const DEFAULT_TIMEOUTS: Readonly<Timeouts> = Object.freeze({
  propose: 3000, proposeDelta: 500, prevote: 1000, prevoteDelta: 500, precommit: 1000, precommitDelta: 500
})

/** Rounds ahead of ours whose messages are always kept. */
export const MAX_FUTURE_ROUNDS = 4
/** Further-ahead rounds kept per sender (its highest ones), as CometBFT's peerCatchupRounds. */
export const MAX_CATCHUP_ROUNDS = 2
/** Distinct proposals kept per round, besides those backed by more than 1/3 of the power. */
export const MAX_PROPOSALS_PER_ROUND = 3
/** Distinct values one validator's votes count toward per (round, type): its first vote and conflicting ones (departure 8). */
export const MAX_VALUES_PER_VOTER = MAX_PROPOSALS_PER_ROUND + 3
/** Messages for height + 1 buffered per (sender, round, kind). */
export const MAX_BUFFERED_PER_SENDER_ROUND = 2
/** Longest value (block hash) and validator id, in characters. */
export const MAX_VALUE_LENGTH = 256
export const MAX_ID_LENGTH = 512
/** Largest validator set. */
export const MAX_VALIDATORS = 10_000
/** Largest total power: 3 * total stays an exact integer (CometBFT caps at MaxInt64 / 8). */
export const MAX_TOTAL_POWER = Math.floor(Number.MAX_SAFE_INTEGER / 8)
/** Proposer schedule resolution: powers are scaled so one schedule period has at most this many slots (+ one per validator). */
export const PROPOSER_RESOLUTION = 10_000
/** Largest timeout base or delta (a day). */
export const MAX_TIMEOUT_MS = 86_400_000

export class InvalidConsensusInputError extends Error {
  name = 'InvalidConsensusInputError'
}

export class InvalidValidatorSetError extends Error {
  name = 'InvalidValidatorSetError'
}

export class ConsensusStateError extends Error {
  name = 'ConsensusStateError'
}

/** Read-only view of the algorithm's variables. */
export interface ConsensusState {
  readonly height: number
  readonly round: number
  readonly step: Step
  readonly lockedValue: string | null
  readonly lockedRound: number
  readonly validValue: string | null
  readonly validRound: number
  readonly decision: { readonly round: number, readonly value: string } | null
}

export interface ConsensusInit {
  /** Our validator id (did:key); null, or an id not in the set, follows without voting. */
  self: string | null
  validators: Validator[]
  height: number
  timeouts?: Partial<Timeouts>
}

/** Everything `fromJSON` needs; plain data. */
export interface ConsensusSnapshot {
  version: 1
  self: string | null
  validators: Validator[]
  timeouts: Timeouts
  height: number
  round: number
  step: Step
  lockedValue: string | null
  lockedRound: number
  validValue: string | null
  validRound: number
  started: boolean
  decision: { round: number, value: string, precommits: Vote[] } | null
  /** Round whose `need-value` is unanswered, or -1. */
  awaitingValue: number
  /** L34, L36, L47 "for the first time" in the current round. */
  fired: { prevoteTimeout: boolean, lock: boolean, precommitTimeout: boolean }
  /** What we signed at this height: never sign anything else for the same slot. */
  own: { proposals: Proposal[], votes: Vote[] }
  rounds: Array<{ round: number, proposals: Array<{ proposal: Proposal, valid: boolean }>, prevotes: Vote[], precommits: Vote[] }>
  /** Keys `type/round/validator` already reported as evidence. */
  evidence: string[]
  /** Keys `round/value` already asked for with `need-proposal`. */
  asked: string[]
  /** Inputs for height + 1. */
  buffer: Input[]
}

// ---------------------------------------------------------------- checks

const invalid = (msg: string): never => { throw new InvalidConsensusInputError(msg) }

function isObject (x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null
}

function checkInt (x: unknown, name: string, min: number): number {
  if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < min) invalid(`${name} must be an integer >= ${min}`)
  return x as number
}

function checkString (x: unknown, name: string, max: number): string {
  if (typeof x !== 'string' || x.length === 0 || x.length > max) invalid(`${name} must be a non-empty string of at most ${max} characters`)
  return x as string
}

function checkProposal (p: unknown): Proposal {
  if (!isObject(p)) return invalid('proposal must be an object')
  checkInt(p.height, 'proposal.height', 0)
  checkInt(p.round, 'proposal.round', 0)
  checkInt(p.polRound, 'proposal.polRound', -1)
  checkString(p.value, 'proposal.value', MAX_VALUE_LENGTH)
  checkString(p.proposer, 'proposal.proposer', MAX_ID_LENGTH)
  return p as unknown as Proposal
}

function checkVote (v: unknown): Vote {
  if (!isObject(v)) return invalid('vote must be an object')
  if (v.type !== 'prevote' && v.type !== 'precommit') invalid('vote.type must be prevote or precommit')
  checkInt(v.height, 'vote.height', 0)
  checkInt(v.round, 'vote.round', 0)
  if (v.value !== null) checkString(v.value, 'vote.value', MAX_VALUE_LENGTH)
  checkString(v.validator, 'vote.validator', MAX_ID_LENGTH)
  return v as unknown as Vote
}

function checkInput (input: unknown): Input {
  if (!isObject(input)) return invalid('input must be an object')
  switch (input.type) {
    case 'proposal':
      checkProposal(input.proposal)
      if (typeof input.valid !== 'boolean') invalid('proposal input needs a boolean valid')
      break
    case 'vote':
      checkVote(input.vote)
      break
    case 'timeout':
      if (input.step !== 'propose' && input.step !== 'prevote' && input.step !== 'precommit') invalid('timeout.step must be propose, prevote or precommit')
      checkInt(input.height, 'timeout.height', 0)
      checkInt(input.round, 'timeout.round', 0)
      break
    case 'value-ready':
      checkInt(input.height, 'value-ready.height', 0)
      checkInt(input.round, 'value-ready.round', 0)
      checkString(input.value, 'value-ready.value', MAX_VALUE_LENGTH)
      break
    default:
      invalid(`unknown input type ${String(input.type)}`)
  }
  return input as unknown as Input
}

/** Checks a validator set: non-empty, unique ids, positive integer powers, bounded total. Returns the total power. */
export function checkValidators (validators: readonly Validator[]): number {
  if (!Array.isArray(validators) || validators.length === 0) throw new InvalidValidatorSetError('the validator set must be a non-empty array')
  if (validators.length > MAX_VALIDATORS) throw new InvalidValidatorSetError(`at most ${MAX_VALIDATORS} validators`)
  const ids = new Set<string>()
  let total = 0
  for (const v of validators) {
    if (!isObject(v) || typeof v.id !== 'string' || v.id.length === 0 || v.id.length > MAX_ID_LENGTH) throw new InvalidValidatorSetError('each validator needs an id string')
    if (ids.has(v.id)) throw new InvalidValidatorSetError(`duplicate validator ${v.id}`)
    ids.add(v.id)
    const power = v.power as unknown
    if (typeof power !== 'number' || !Number.isSafeInteger(power) || power < 1) throw new InvalidValidatorSetError(`validator ${v.id} needs a positive integer power`)
    total += power
    if (total > MAX_TOTAL_POWER) throw new InvalidValidatorSetError(`total power above ${MAX_TOTAL_POWER}`)
  }
  return total
}

function checkTimeouts (t: Partial<Timeouts> | undefined): Timeouts {
  const out = { ...DEFAULT_TIMEOUTS }
  if (t === undefined) return out
  if (!isObject(t)) throw new InvalidConsensusInputError('timeouts must be an object')
  for (const k of Object.keys(DEFAULT_TIMEOUTS) as Array<keyof Timeouts>) {
    const x = t[k]
    if (x === undefined) continue
    if (!Number.isSafeInteger(x) || x < 0 || x > MAX_TIMEOUT_MS) throw new InvalidConsensusInputError(`timeouts.${k} must be an integer in [0, ${MAX_TIMEOUT_MS}]`)
    out[k] = x
  }
  return out
}

// ---------------------------------------------------------------- proposer

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

function scheduleOf (validators: readonly Validator[]): string[] {
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

function pick (schedule: readonly string[], height: number, round: number): string {
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

// ---------------------------------------------------------------- the state machine

const NIL = '' // tally key of nil: values are non-empty strings

/** total and firstByValue count each validator's first vote; byValue adds conflicting votes (departure 8). */
interface Tally { total: number, byValue: Map<string, number>, firstByValue: Map<string, number> }

interface RoundData {
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

const newRound = (): RoundData => ({
  proposals: [],
  votes: { prevote: new Map(), precommit: new Map() },
  extra: { prevote: new Map(), precommit: new Map() },
  tally: { prevote: { total: 0, byValue: new Map(), firstByValue: new Map() }, precommit: { total: 0, byValue: new Map(), firstByValue: new Map() } },
  senders: new Map(),
  senderPower: 0
})

/** A bug guard: each pass of `evaluate` fires one rule that moves the state forward. */
const MAX_RULE_PASSES = 10_000

export class Consensus {
  private readonly self: string | null
  private readonly timeouts: Timeouts
  private validators: Validator[] = []
  private powers = new Map<string, number>()
  private total = 0
  private schedule: string[] = []

  private height = 0
  private round = 0
  private stepName: Step = 'propose'
  private lockedValue: string | null = null
  private lockedRound = -1
  private validValue: string | null = null
  private validRound = -1
  private started = false
  private decision: { round: number, value: string, precommits: Vote[] } | null = null
  private awaitingValue = -1
  private fired = { prevoteTimeout: false, lock: false, precommitTimeout: false }
  private ownProposals = new Map<number, Proposal>()
  private ownVotes = new Map<string, Vote>()
  private rounds = new Map<number, RoundData>()
  private evidence = new Set<string>()
  private asked = new Set<string>()
  private buffer: Input[] = []

  constructor (init: ConsensusInit) {
    if (!isObject(init)) throw new InvalidConsensusInputError('init must be an object')
    if (init.self !== null) checkString(init.self, 'self', MAX_ID_LENGTH)
    this.self = init.self
    this.timeouts = checkTimeouts(init.timeouts)
    this.resetHeight(checkInt(init.height, 'height', 0), init.validators)
  }

  /** The algorithm's variables. */
  get state (): ConsensusState {
    return Object.freeze({
      height: this.height,
      round: this.round,
      step: this.stepName,
      lockedValue: this.lockedValue,
      lockedRound: this.lockedRound,
      validValue: this.validValue,
      validRound: this.validRound,
      decision: this.decision === null ? null : Object.freeze({ round: this.decision.round, value: this.decision.value })
    })
  }

  /** Whether we vote: `self` is in this height's validator set. */
  get isValidator (): boolean { return this.self !== null && this.powers.has(this.self) }

  /**
   * Starts round 0 (L10). On an instance restored from a snapshot, returns instead what a crash
   * lost: the current round's armed timeouts, an unanswered `need-value`, or an unapplied `commit`.
   */
  start (): Action[] {
    const out: Action[] = []
    if (!this.started) {
      this.started = true
      this.startRound(0, out)
      this.evaluate(out)
      return out
    }
    if (this.decision !== null) {
      out.push({ type: 'commit', height: this.height, round: this.decision.round, value: this.decision.value, precommits: [...this.decision.precommits] })
      return out
    }
    if (this.stepName === 'propose') {
      if (this.awaitingValue === this.round) out.push({ type: 'need-value', height: this.height, round: this.round })
      out.push(this.timeoutAction('propose'))
    }
    if (this.stepName === 'prevote' && this.fired.prevoteTimeout) out.push(this.timeoutAction('prevote'))
    if (this.fired.precommitTimeout) out.push(this.timeoutAction('precommit'))
    return out
  }

  /**
   * Feeds one input; returns the actions to carry out, in order. Ignored (returns []): messages
   * from non-validators, for other heights, duplicates, proposals not from the round's proposer,
   * stale timeouts. Messages for height + 1 are buffered and replayed by `nextHeight`, at most
   * MAX_BUFFERED_PER_SENDER_ROUND per (sender, round, kind), rounds up to MAX_FUTURE_ROUNDS, and
   * only from members of the current set (the next set is not known yet; a new validator's early
   * messages come again by gossip). Throws InvalidConsensusInputError on a malformed input.
   */
  step (input: Input): Action[] {
    checkInput(input)
    if (!this.started) throw new ConsensusStateError('call start() before step()')
    const out: Action[] = []
    switch (input.type) {
      case 'proposal': this.onProposal({ ...input.proposal }, input.valid, out); break
      case 'vote': this.onVote({ ...input.vote }, out); break
      case 'timeout': this.onTimeout(input.step, input.height, input.round, out); break
      case 'value-ready': this.onValueReady(input.height, input.round, input.value, out); break
    }
    return out
  }

  /**
   * After a `commit`: moves to height + 1 with its validator set, starts round 0 and replays the
   * buffered messages for that height. (Departure 1: the paper moves on inside the commit rule.)
   */
  nextHeight (validators: Validator[]): Action[] {
    if (this.decision === null) throw new ConsensusStateError('nextHeight() before a commit')
    const buffered = this.buffer
    this.resetHeight(this.height + 1, validators)
    this.started = true
    const out: Action[] = []
    this.startRound(0, out)
    this.evaluate(out)
    for (const input of buffered) out.push(...this.step(input))
    return out
  }

  /** Our proposals and votes at this height, as actions, to gossip again after a restart. */
  ownMessages (): Action[] {
    const out: Action[] = []
    for (const proposal of this.ownProposals.values()) out.push({ type: 'propose', proposal: { ...proposal } })
    for (const vote of this.ownVotes.values()) out.push({ type: 'vote', vote: { ...vote } })
    return out
  }

  // -------------------------------------------------------------- snapshot

  toJSON (): ConsensusSnapshot {
    return {
      version: 1,
      self: this.self,
      validators: this.validators.map(v => ({ id: v.id, power: v.power })),
      timeouts: { ...this.timeouts },
      height: this.height,
      round: this.round,
      step: this.stepName,
      lockedValue: this.lockedValue,
      lockedRound: this.lockedRound,
      validValue: this.validValue,
      validRound: this.validRound,
      started: this.started,
      decision: this.decision === null ? null : { round: this.decision.round, value: this.decision.value, precommits: this.decision.precommits.map(v => ({ ...v })) },
      awaitingValue: this.awaitingValue,
      fired: { ...this.fired },
      own: { proposals: [...this.ownProposals.values()].map(p => ({ ...p })), votes: [...this.ownVotes.values()].map(v => ({ ...v })) },
      rounds: [...this.rounds.entries()].sort((a, b) => a[0] - b[0]).map(([round, rd]) => ({
        round,
        proposals: rd.proposals.map(e => ({ proposal: { ...e.proposal }, valid: e.valid })),
        prevotes: [...rd.votes.prevote.values(), ...[...rd.extra.prevote.values()].flat()].map(v => ({ ...v })),
        precommits: [...rd.votes.precommit.values(), ...[...rd.extra.precommit.values()].flat()].map(v => ({ ...v }))
      })),
      evidence: [...this.evidence],
      asked: [...this.asked],
      buffer: this.buffer.map(i => structuredCloneInput(i))
    }
  }

  /** Rebuilds an instance from `toJSON()`; tallies are recomputed from the stored messages. */
  static fromJSON (snapshot: ConsensusSnapshot): Consensus {
    if (!isObject(snapshot) || snapshot.version !== 1) throw new InvalidConsensusInputError('not a version 1 consensus snapshot')
    const c = new Consensus({ self: snapshot.self, validators: snapshot.validators, height: snapshot.height, timeouts: snapshot.timeouts })
    c.round = checkInt(snapshot.round, 'round', 0)
    if (!['propose', 'prevote', 'precommit', 'commit'].includes(snapshot.step)) invalid('bad step')
    c.stepName = snapshot.step
    c.lockedValue = snapshot.lockedValue
    c.lockedRound = checkInt(snapshot.lockedRound, 'lockedRound', -1)
    c.validValue = snapshot.validValue
    c.validRound = checkInt(snapshot.validRound, 'validRound', -1)
    c.started = snapshot.started === true
    c.decision = snapshot.decision === null ? null : { round: snapshot.decision.round, value: snapshot.decision.value, precommits: snapshot.decision.precommits.map(v => ({ ...checkVote(v) })) }
    c.awaitingValue = checkInt(snapshot.awaitingValue, 'awaitingValue', -1)
    c.fired = { prevoteTimeout: snapshot.fired.prevoteTimeout === true, lock: snapshot.fired.lock === true, precommitTimeout: snapshot.fired.precommitTimeout === true }
    for (const p of snapshot.own.proposals) c.ownProposals.set(p.round, { ...checkProposal(p) })
    for (const v of snapshot.own.votes) c.ownVotes.set(`${v.type}/${v.round}`, { ...checkVote(v) })
    for (const r of snapshot.rounds) {
      const rd = c.roundData(checkInt(r.round, 'round', 0))
      for (const e of r.proposals) {
        rd.proposals.push({ proposal: { ...checkProposal(e.proposal) }, valid: e.valid === true })
        c.addSender(rd, e.proposal.proposer)
      }
      for (const v of [...r.prevotes, ...r.precommits]) c.addVote(rd, { ...checkVote(v) })
    }
    c.evidence = new Set(snapshot.evidence)
    c.asked = new Set(snapshot.asked)
    c.buffer = snapshot.buffer.map(i => structuredCloneInput(checkInput(i)))
    return c
  }

  // -------------------------------------------------------------- inputs

  private onProposal (p: Proposal, valid: boolean, out: Action[]): void {
    if (this.toBuffer(p.height, p.round, p.proposer, 'proposal', { type: 'proposal', proposal: p, valid })) return
    if (p.height !== this.height || this.decision !== null) return
    if (p.proposer !== pick(this.schedule, this.height, p.round)) return
    const rd = this.rounds.get(p.round)
    if (rd !== undefined) {
      if (rd.proposals.some(e => e.proposal.value === p.value)) return // duplicate (or a re-send with another polRound: keep the first)
      // Departure 3: bound what a byzantine proposer can make us keep.
      if (rd.proposals.length >= MAX_PROPOSALS_PER_ROUND && !this.backed(rd, p.value)) return
    }
    if (!this.admit(p.round, p.proposer)) return
    const data = this.roundData(p.round)
    data.proposals.push({ proposal: p, valid })
    this.addSender(data, p.proposer)
    this.evaluate(out)
  }

  private onVote (vote: Vote, out: Action[]): void {
    if (this.toBuffer(vote.height, vote.round, vote.validator, vote.type, { type: 'vote', vote })) return
    if (vote.height !== this.height || this.decision !== null) return
    if (!this.powers.has(vote.validator)) return
    const rd = this.rounds.get(vote.round)
    const first = rd?.votes[vote.type].get(vote.validator)
    if (rd !== undefined && first !== undefined) {
      if (first.value === vote.value || rd.extra[vote.type].get(vote.validator)?.some(v => v.value === vote.value) === true) return // duplicate
      // Departure 8: report the pair once; the conflicting vote counts toward its own value only.
      const key = `${vote.type}/${vote.round}/${vote.validator}`
      if (!this.evidence.has(key)) {
        this.evidence.add(key)
        out.push({ type: 'evidence', a: { ...first }, b: vote })
      }
      if (this.addVote(rd, vote)) this.evaluate(out)
      return
    }
    if (!this.admit(vote.round, vote.validator)) return
    this.addVote(this.roundData(vote.round), vote)
    this.evaluate(out)
  }

  private onTimeout (step: TimeoutStep, height: number, round: number, out: Action[]): void {
    if (height !== this.height || round !== this.round || this.decision !== null) return
    if (step === 'propose' && this.stepName === 'propose') { // L57-60
      this.castVote('prevote', null, out)
      this.stepName = 'prevote'
    } else if (step === 'prevote' && this.stepName === 'prevote') { // L61-64
      this.castVote('precommit', null, out)
      this.stepName = 'precommit'
    } else if (step === 'precommit') { // L65-67
      this.startRound(this.round + 1, out)
    } else {
      return
    }
    this.evaluate(out)
  }

  /** Departure 2: the answer to `need-value`, taken only while this round is still at its propose step. */
  private onValueReady (height: number, round: number, value: string, out: Action[]): void {
    if (height !== this.height || round !== this.round || this.decision !== null) return
    if (this.stepName !== 'propose' || this.awaitingValue !== round) return
    this.awaitingValue = -1
    // L15-19: validValue is nil here (it only changes at step >= prevote), so validRound is -1.
    this.propose(this.validValue ?? value, this.validValue === null ? -1 : this.validRound, out)
    this.evaluate(out)
  }

  /** Buffers a message for height + 1 (bounded); true if the message was for height + 1. */
  private toBuffer (height: number, round: number, sender: string, kind: string, input: Input): boolean {
    if (height !== this.height + 1) return false
    if (round > MAX_FUTURE_ROUNDS || !this.powers.has(sender)) return true
    let same = 0
    for (const b of this.buffer) {
      const [bRound, bSender, bKind] = b.type === 'proposal'
        ? [b.proposal.round, b.proposal.proposer, 'proposal']
        : b.type === 'vote' ? [b.vote.round, b.vote.validator, b.vote.type] : [-1, '', '']
      if (bRound !== round || bSender !== sender || bKind !== kind) continue
      const bValue = b.type === 'proposal' ? b.proposal.value : b.type === 'vote' ? b.vote.value : undefined
      const value = input.type === 'proposal' ? input.proposal.value : input.type === 'vote' ? input.vote.value : undefined
      if (bValue === value) return true // duplicate
      same++
    }
    if (same < MAX_BUFFERED_PER_SENDER_ROUND) this.buffer.push(input)
    return true
  }

  /**
   * Departure 4: whether to keep a message of `sender` for `round`. Rounds up to ours +
   * MAX_FUTURE_ROUNDS always; beyond, each sender's MAX_CATCHUP_ROUNDS highest rounds, a higher
   * one evicting its lowest (a correct validator only moves up, and L55 needs its latest rounds).
   */
  private admit (round: number, sender: string): boolean {
    const horizon = this.round + MAX_FUTURE_ROUNDS
    if (round <= horizon) return true
    if (this.rounds.get(round)?.senders.has(sender) === true) return true
    const far: number[] = []
    for (const [r, rd] of this.rounds) if (r > horizon && rd.senders.has(sender)) far.push(r)
    if (far.length < MAX_CATCHUP_ROUNDS) return true
    const lowest = Math.min(...far)
    if (round < lowest) return false
    this.evict(lowest, sender)
    return true
  }

  private evict (round: number, sender: string): void {
    const rd = this.rounds.get(round)
    if (rd === undefined) return
    const power = this.powers.get(sender) ?? 0
    for (const type of ['prevote', 'precommit'] as const) {
      const v = rd.votes[type].get(sender)
      if (v === undefined) continue
      const t = rd.tally[type]
      t.total -= power
      subtract(t.firstByValue, v.value ?? NIL, power)
      for (const x of [v, ...(rd.extra[type].get(sender) ?? [])]) subtract(t.byValue, x.value ?? NIL, power)
      rd.votes[type].delete(sender)
      rd.extra[type].delete(sender)
      this.evidence.delete(`${type}/${round}/${sender}`)
    }
    rd.proposals = rd.proposals.filter(e => e.proposal.proposer !== sender)
    if (rd.senders.delete(sender)) rd.senderPower -= this.powers.get(sender) ?? 0
    if (rd.senders.size === 0) this.rounds.delete(round)
  }

  // -------------------------------------------------------------- rules

  /** Fires enabled upon-rules one at a time until none is (departure 5). */
  private evaluate (out: Action[]): void {
    for (let pass = 0; pass < MAX_RULE_PASSES; pass++) {
      if (this.decision !== null) return
      if (this.tryCommit(out)) return
      if (this.trySkip(out)) continue
      if (!this.tryRoundRules(out)) return
    }
    throw new ConsensusStateError('upon-rules did not settle (a bug)')
  }

  /** L49-54: a proposal for v at any round r and 2f+1 precommits for v at r decide v. */
  private tryCommit (out: Action[]): boolean {
    for (const [round, rd] of this.rounds) {
      for (const [value, power] of rd.tally.precommit.byValue) {
        if (value === NIL || !this.quorum(power)) continue
        const entry = rd.proposals.find(e => e.proposal.value === value)
        if (entry === undefined) { this.ask(round, value, out); continue }
        if (!entry.valid) continue
        const precommits = [...rd.votes.precommit.values(), ...[...rd.extra.precommit.values()].flat()].filter(v => v.value === value)
        this.decision = { round, value, precommits }
        this.stepName = 'commit'
        this.awaitingValue = -1
        out.push({ type: 'commit', height: this.height, round, value, precommits: precommits.map(v => ({ ...v })) })
        return true
      }
    }
    return false
  }

  /** L55-56: f+1 of the power sent messages for a higher round: go there (departure 6: the highest). */
  private trySkip (out: Action[]): boolean {
    let best = -1
    for (const [round, rd] of this.rounds) {
      if (round > this.round && round > best && this.oneThird(rd.senderPower)) best = round
    }
    if (best < 0) return false
    this.startRound(best, out)
    return true
  }

  private tryRoundRules (out: Action[]): boolean {
    const rd = this.rounds.get(this.round)
    if (rd === undefined) return false
    const step = this.stepName
    if (step === 'propose') {
      for (const { proposal: p, valid } of rd.proposals) {
        if (p.polRound === -1) { // L22-27
          const ok = valid && (this.lockedRound === -1 || this.lockedValue === p.value)
          this.castVote('prevote', ok ? p.value : null, out)
          this.stepName = 'prevote'
          return true
        }
        if (p.polRound >= 0 && p.polRound < this.round && this.quorum(this.rounds.get(p.polRound)?.tally.prevote.byValue.get(p.value) ?? 0)) { // L28-33
          const ok = valid && (this.lockedRound <= p.polRound || this.lockedValue === p.value)
          this.castVote('prevote', ok ? p.value : null, out)
          this.stepName = 'prevote'
          return true
        }
      }
    }
    if ((step === 'prevote' || step === 'precommit') && !this.fired.lock) { // L36-43
      for (const [value, power] of rd.tally.prevote.byValue) {
        if (value === NIL || !this.quorum(power)) continue
        const entry = rd.proposals.find(e => e.proposal.value === value)
        if (entry === undefined) { this.ask(this.round, value, out); continue }
        if (!entry.valid) continue
        this.fired.lock = true
        if (step === 'prevote') {
          this.lockedValue = value
          this.lockedRound = this.round
          this.castVote('precommit', value, out)
          this.stepName = 'precommit'
        }
        this.validValue = value
        this.validRound = this.round
        return true
      }
    }
    if (step === 'prevote' && this.quorum(rd.tally.prevote.byValue.get(NIL) ?? 0)) { // L44-46
      this.castVote('precommit', null, out)
      this.stepName = 'precommit'
      return true
    }
    if (step === 'prevote' && !this.fired.prevoteTimeout && this.quorum(rd.tally.prevote.total)) { // L34-35
      this.fired.prevoteTimeout = true
      out.push(this.timeoutAction('prevote'))
      return true
    }
    if (!this.fired.precommitTimeout && this.quorum(rd.tally.precommit.total)) { // L47-48
      this.fired.precommitTimeout = true
      out.push(this.timeoutAction('precommit'))
      return true
    }
    return false
  }

  /** L11-21. */
  private startRound (round: number, out: Action[]): void {
    this.round = round
    this.stepName = 'propose'
    this.fired = { prevoteTimeout: false, lock: false, precommitTimeout: false }
    this.awaitingValue = -1
    if (this.isValidator && pick(this.schedule, this.height, round) === this.self && !this.ownProposals.has(round)) {
      if (this.validValue !== null) {
        this.propose(this.validValue, this.validRound, out)
      } else {
        this.awaitingValue = round
        out.push({ type: 'need-value', height: this.height, round })
      }
    }
    // Departure 2: the proposer arms timeoutPropose too (L20-21 arm it only for the others).
    out.push(this.timeoutAction('propose'))
  }

  // -------------------------------------------------------------- signing (at most once per slot)

  private propose (value: string, polRound: number, out: Action[]): void {
    if (!this.isValidator || this.ownProposals.has(this.round)) return
    const self = this.self as string
    const rd = this.roundData(this.round)
    // A proposal of ours we did not record (a snapshot older than a broadcast): do not sign another.
    if (rd.proposals.some(e => e.proposal.proposer === self)) return
    const proposal: Proposal = { height: this.height, round: this.round, polRound, value, proposer: self }
    this.ownProposals.set(this.round, proposal)
    rd.proposals.push({ proposal, valid: true })
    this.addSender(rd, self)
    out.push({ type: 'propose', proposal: { ...proposal } })
  }

  /** Records and emits our vote; never a second one for the same (height, round, type). */
  private castVote (type: VoteType, value: string | null, out: Action[]): void {
    if (!this.isValidator) return
    const self = this.self as string
    const key = `${type}/${this.round}`
    if (this.ownVotes.has(key)) return
    const rd = this.roundData(this.round)
    if (rd.votes[type].has(self)) return // as above: a vote with our id is already out there
    const vote: Vote = { type, height: this.height, round: this.round, value, validator: self }
    this.ownVotes.set(key, vote)
    this.addVote(rd, vote)
    out.push({ type: 'vote', vote: { ...vote } })
  }

  // -------------------------------------------------------------- helpers

  private resetHeight (height: number, validators: Validator[]): void {
    this.total = checkValidators(validators)
    this.validators = validators.map(v => ({ id: v.id, power: v.power }))
    this.powers = new Map(this.validators.map(v => [v.id, v.power]))
    this.schedule = scheduleOf(this.validators)
    this.height = height
    this.round = 0
    this.stepName = 'propose'
    this.lockedValue = null
    this.lockedRound = -1
    this.validValue = null
    this.validRound = -1
    this.started = false
    this.decision = null
    this.awaitingValue = -1
    this.fired = { prevoteTimeout: false, lock: false, precommitTimeout: false }
    this.ownProposals = new Map()
    this.ownVotes = new Map()
    this.rounds = new Map()
    this.evidence = new Set()
    this.asked = new Set()
    this.buffer = []
  }

  /** Strictly more than 2/3 of the power ("2f+1"). */
  private quorum (power: number): boolean { return 3 * power > 2 * this.total }
  /** Strictly more than 1/3 of the power ("f+1"). */
  private oneThird (power: number): boolean { return 3 * power > this.total }

  /** Whether more than 1/3 of the power prevoted or precommitted `value` in this round. */
  private backed (rd: RoundData, value: string): boolean {
    return this.oneThird(rd.tally.prevote.byValue.get(value) ?? 0) || this.oneThird(rd.tally.precommit.byValue.get(value) ?? 0)
  }

  private ask (round: number, value: string, out: Action[]): void {
    const key = `${round}/${value}`
    if (this.asked.has(key)) return
    this.asked.add(key)
    out.push({ type: 'need-proposal', height: this.height, round, value })
  }

  private roundData (round: number): RoundData {
    let rd = this.rounds.get(round)
    if (rd === undefined) {
      rd = newRound()
      this.rounds.set(round, rd)
    }
    return rd
  }

  private addSender (rd: RoundData, id: string): void {
    const n = rd.senders.get(id) ?? 0
    rd.senders.set(id, n + 1)
    if (n === 0) rd.senderPower += this.powers.get(id) ?? 0
  }

  /**
   * Counts a vote: a validator's first vote in the totals and toward its value; a later,
   * different one toward its own value only, if that is nil or has a proposal kept in this round,
   * up to MAX_VALUES_PER_VOTER values (departure 8). Returns whether it was counted.
   */
  private addVote (rd: RoundData, vote: Vote): boolean {
    const power = this.powers.get(vote.validator)
    if (power === undefined) return false
    const t = rd.tally[vote.type]
    const key = vote.value ?? NIL
    const first = rd.votes[vote.type].get(vote.validator)
    if (first === undefined) {
      rd.votes[vote.type].set(vote.validator, vote)
      t.total += power
      t.firstByValue.set(key, (t.firstByValue.get(key) ?? 0) + power)
      this.addSender(rd, vote.validator)
    } else {
      const extras = rd.extra[vote.type].get(vote.validator) ?? []
      if (first.value === vote.value || extras.some(v => v.value === vote.value)) return false
      if (extras.length + 1 >= MAX_VALUES_PER_VOTER) return false
      // Only where it can matter: equivocators hold less than 1/3, so any quorum for a value has
      // more than 1/3 in first votes; and L36/L49 need a proposal. Others come again by gossip.
      const relevant = vote.value === null || rd.proposals.some(e => e.proposal.value === vote.value) || this.oneThird(t.firstByValue.get(key) ?? 0)
      if (!relevant) return false
      extras.push(vote)
      rd.extra[vote.type].set(vote.validator, extras)
    }
    t.byValue.set(key, (t.byValue.get(key) ?? 0) + power)
    return true
  }

  private timeoutAction (step: TimeoutStep): Action {
    const t = this.timeouts
    const ms = step === 'propose'
      ? t.propose + this.round * t.proposeDelta
      : step === 'prevote' ? t.prevote + this.round * t.prevoteDelta : t.precommit + this.round * t.precommitDelta
    return { type: 'schedule-timeout', step, height: this.height, round: this.round, ms }
  }
}

function subtract (m: Map<string, number>, key: string, power: number): void {
  const left = (m.get(key) ?? 0) - power
  if (left === 0) m.delete(key)
  else m.set(key, left)
}

function structuredCloneInput (i: Input): Input {
  switch (i.type) {
    case 'proposal': return { type: 'proposal', proposal: { ...i.proposal }, valid: i.valid }
    case 'vote': return { type: 'vote', vote: { ...i.vote } }
    default: return { ...i }
  }
}
