/**
 * Tendermint BFT consensus as a pure, synchronous state machine: Algorithm 1 of Buchman, Kwon and
 * Milosevic, "The latest gossip on BFT consensus" (2018), as CometBFT implements it. Line numbers
 * in comments (L22, L36, ...) are the paper's.
 *
 * No I/O, timers, clock or crypto: the ledger service decodes and verifies signed messages, feeds
 * them in as `Input`s and carries out the `Action`s returned (sign and broadcast, arm a timer,
 * build a block, apply a commit). So a whole network of these runs in one test, and a validator's
 * state is plain data that goes to a write-ahead log. Its vocabulary and input checks are in
 * consensus-types.ts, a round's tallies in consensus-round.ts, the proposer schedule in proposer.ts.
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
import {
  checkInput, checkInt, checkProposal, checkString, checkTimeouts, checkValidators, checkVote, ConsensusStateError, invalid, InvalidConsensusInputError, isObject,
  MAX_CATCHUP_ROUNDS, MAX_FUTURE_ROUNDS, MAX_ID_LENGTH, MAX_PROPOSALS_PER_ROUND, MAX_BUFFERED_PER_SENDER_ROUND,
  type Action, type ConsensusInit, type ConsensusSnapshot, type ConsensusState, type Input, type Proposal, type Step, type TimeoutStep, type Timeouts, type Validator, type Vote, type VoteType
} from './consensus-types.ts'
import { addSender, addVote, newRound, NIL, structuredCloneInput, subtract, type RoundData } from './consensus-round.ts'
import { pick, scheduleOf } from './proposer.ts'

export {
  checkValidators, ConsensusStateError, DEFAULT_TIMEOUTS, InvalidConsensusInputError, InvalidValidatorSetError, MAX_BUFFERED_PER_SENDER_ROUND, MAX_CATCHUP_ROUNDS,
  MAX_FUTURE_ROUNDS, MAX_ID_LENGTH, MAX_PROPOSALS_PER_ROUND, MAX_TIMEOUT_MS, MAX_TOTAL_POWER, MAX_VALIDATORS, MAX_VALUE_LENGTH, MAX_VALUES_PER_VOTER, PROPOSER_RESOLUTION
} from './consensus-types.ts'
export type { Action, ConsensusInit, ConsensusSnapshot, ConsensusState, Input, Proposal, Step, TimeoutStep, Timeouts, Validator, Vote, VoteType } from './consensus-types.ts'
export { proposer } from './proposer.ts'

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
        addSender(rd, e.proposal.proposer, c.powers)
      }
      for (const v of [...r.prevotes, ...r.precommits]) addVote(rd, { ...checkVote(v) }, c.powers, c.total)
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
    addSender(data, p.proposer, this.powers)
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
      if (addVote(rd, vote, this.powers, this.total)) this.evaluate(out)
      return
    }
    if (!this.admit(vote.round, vote.validator)) return
    addVote(this.roundData(vote.round), vote, this.powers, this.total)
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
    addSender(rd, self, this.powers)
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
    addVote(rd, vote, this.powers, this.total)
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

  private timeoutAction (step: TimeoutStep): Action {
    const t = this.timeouts
    const ms = step === 'propose'
      ? t.propose + this.round * t.proposeDelta
      : step === 'prevote' ? t.prevote + this.round * t.prevoteDelta : t.precommit + this.round * t.precommitDelta
    return { type: 'schedule-timeout', step, height: this.height, round: this.round, ms }
  }
}
