/**
 * The consensus state machine's vocabulary (consensus.ts): its inputs and actions, the messages
 * it counts, its limits and named errors, the snapshot it persists, and the checks every input
 * and snapshot passes at the boundary. Plain data and pure functions, shared by the machine, the
 * proposer schedule and the ledger service that drives them.
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

export const invalid = (msg: string): never => { throw new InvalidConsensusInputError(msg) }

export function isObject (x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null
}

export function checkInt (x: unknown, name: string, min: number): number {
  if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < min) invalid(`${name} must be an integer >= ${min}`)
  return x as number
}

export function checkString (x: unknown, name: string, max: number): string {
  if (typeof x !== 'string' || x.length === 0 || x.length > max) invalid(`${name} must be a non-empty string of at most ${max} characters`)
  return x as string
}

export function checkProposal (p: unknown): Proposal {
  if (!isObject(p)) return invalid('proposal must be an object')
  checkInt(p.height, 'proposal.height', 0)
  checkInt(p.round, 'proposal.round', 0)
  checkInt(p.polRound, 'proposal.polRound', -1)
  checkString(p.value, 'proposal.value', MAX_VALUE_LENGTH)
  checkString(p.proposer, 'proposal.proposer', MAX_ID_LENGTH)
  return p as unknown as Proposal
}

export function checkVote (v: unknown): Vote {
  if (!isObject(v)) return invalid('vote must be an object')
  if (v.type !== 'prevote' && v.type !== 'precommit') invalid('vote.type must be prevote or precommit')
  checkInt(v.height, 'vote.height', 0)
  checkInt(v.round, 'vote.round', 0)
  if (v.value !== null) checkString(v.value, 'vote.value', MAX_VALUE_LENGTH)
  checkString(v.validator, 'vote.validator', MAX_ID_LENGTH)
  return v as unknown as Vote
}

export function checkInput (input: unknown): Input {
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

export function checkTimeouts (t: Partial<Timeouts> | undefined): Timeouts {
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
