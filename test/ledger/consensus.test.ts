/**
 * The Tendermint state machine of src/ledger/consensus.ts.
 *
 * Unit tests: each upon-rule of the paper's Algorithm 1 (L22, L28, ... are its line numbers),
 * locking and unlocking, timeouts, round skipping, power-weighted thresholds, evidence, the limits
 * on future rounds, heights and proposals, followers, the one-validator devnet, snapshots, and the
 * proposer rotation (CometBFT's sequence, exact fairness per period).
 *
 * A simulator: every validator a Consensus instance on a seeded network that delays, reorders and,
 * before GST, drops messages (optionally partitioning the honest validators in two), timeouts fired
 * by a logical clock, gossip that relays and catches up lagging peers as CometBFT's does, and up to
 * f byzantine validators that go silent, equivocate at random, or play both sides of the partition.
 * fast-check properties over it (seed 42): agreement, validity, liveness after GST, evidence of
 * every double vote seen, no double signing across crash-restarts from the write-ahead snapshot;
 * and f+1 crashed validators stop commits until they come back. Removing the lock check (L23)
 * makes the simulator find an agreement violation on its own.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { seeded, type Random } from '../helpers/random.ts'
import {
  Consensus, ConsensusStateError, DEFAULT_TIMEOUTS, InvalidConsensusInputError, InvalidValidatorSetError, MAX_CATCHUP_ROUNDS,
  MAX_FUTURE_ROUNDS, MAX_PROPOSALS_PER_ROUND, PROPOSER_RESOLUTION, proposer,
  type Action, type Input, type Proposal, type Timeouts, type Validator, type Vote
} from '../../src/ledger/consensus.ts'

// ---------------------------------------------------------------- helpers

const idOf = (i: number): string => `did:key:zV${i}`
const equalSet = (n: number): Validator[] => Array.from({ length: n }, (_, i) => ({ id: idOf(i), power: 1 }))
const weightedSet = (powers: number[]): Validator[] => powers.map((power, i) => ({ id: idOf(i), power }))

type ActionOf<T extends Action['type']> = Extract<Action, { type: T }>
const ofType = <T extends Action['type']>(actions: Action[], type: T): Array<ActionOf<T>> => actions.filter((a): a is ActionOf<T> => a.type === type)
const votesIn = (actions: Action[]): Vote[] => ofType(actions, 'vote').map(a => a.vote)

function vote (type: 'prevote' | 'precommit', i: number, round: number, value: string | null, height = 1): Input {
  return { type: 'vote', vote: { type, height, round, value, validator: idOf(i) } }
}
const prevote = (i: number, round: number, value: string | null, height = 1): Input => vote('prevote', i, round, value, height)
const precommit = (i: number, round: number, value: string | null, height = 1): Input => vote('precommit', i, round, value, height)

function proposal (vs: Validator[], round: number, value: string, polRound = -1, valid = true, height = 1): Input {
  return { type: 'proposal', proposal: { height, round, polRound, value, proposer: proposer(vs, height, round) }, valid }
}
const timeout = (step: 'propose' | 'prevote' | 'precommit', round: number, height = 1): Input => ({ type: 'timeout', step, height, round })

/** A started instance; by default self is validator 0 of 4 equal ones at height 1 (proposers of rounds 0..3: v1, v2, v3, v0). */
function setup (opts: { vs?: Validator[], self?: string | null, height?: number, timeouts?: Partial<Timeouts> } = {}): { c: Consensus, vs: Validator[], first: Action[] } {
  const vs = opts.vs ?? equalSet(4)
  const c = new Consensus({ self: opts.self === undefined ? idOf(0) : opts.self, validators: vs, height: opts.height ?? 1, timeouts: opts.timeouts })
  return { c, vs, first: c.start() }
}

function feed (c: Consensus, inputs: Input[]): Action[] {
  return inputs.flatMap(i => c.step(i))
}

// ---------------------------------------------------------------- proposer

describe('proposer', () => {
  it('rotates through equal validators by height + round, whatever the order given', () => {
    const vs = equalSet(4)
    assert.deepEqual([0, 1, 2, 3, 4].map(h => proposer(vs, h, 0)), [0, 1, 2, 3, 0].map(idOf))
    assert.deepEqual([0, 1, 2, 3].map(r => proposer(vs, 1, r)), [1, 2, 3, 0].map(idOf))
    assert.equal(proposer([...vs].reverse(), 7, 3), proposer(vs, 7, 3))
  })

  it("gives CometBFT's sequence for powers 1 and 3 (spec/consensus/proposer-selection.md: p2, p1, p2, p2)", () => {
    const vs = [{ id: 'p2', power: 3 }, { id: 'p1', power: 1 }]
    assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 7].map(k => proposer(vs, k, 0)), ['p2', 'p1', 'p2', 'p2', 'p2', 'p1', 'p2', 'p2'])
  })

  it('over any window of one period each validator proposes exactly its power (over gcd) times (property)', () => {
    const sets = fc.uniqueArray(fc.record({ id: fc.stringMatching(/^did:key:z[a-zA-Z0-9]{1,6}$/), power: fc.integer({ min: 1, max: 40 }) }), { minLength: 1, maxLength: 8, selector: v => v.id })
    fc.assert(fc.property(sets, fc.nat(1000), fc.nat(50), (vs, h, r) => {
      const g = vs.map(v => v.power).reduce((a, b) => { while (b !== 0) [a, b] = [b, a % b]; return a })
      const period = vs.reduce((s, v) => s + v.power, 0) / g
      const counts = new Map<string, number>()
      for (let k = 0; k < period; k++) {
        const p = proposer(vs, h + k, r)
        counts.set(p, (counts.get(p) ?? 0) + 1)
      }
      for (const v of vs) assert.equal(counts.get(v.id) ?? 0, v.power / g, v.id)
      assert.equal(proposer(vs, h, r + 1), proposer(vs, h + 1, r))
      assert.equal(proposer([...vs].reverse(), h, r), proposer(vs, h, r))
    }), { seed: 42, numRuns: 200 })
  })

  it('scales large stakes to a bounded period, every validator still proposing, roughly by power', () => {
    const vs = weightedSet([1e12, 3e12, 1, 5e11])
    const counts = new Map<string, number>()
    const period = PROPOSER_RESOLUTION + vs.length
    for (let k = 0; k < period; k++) {
      const p = proposer(vs, k, 0)
      counts.set(p, (counts.get(p) ?? 0) + 1)
    }
    assert.ok((counts.get(idOf(2)) ?? 0) >= 1, 'a validator with negligible power still gets a slot')
    const share = (counts.get(idOf(1)) ?? 0) / (counts.get(idOf(0)) ?? 1)
    assert.ok(share > 2.9 && share < 3.1, `3:1 power gives 3:1 slots, got ${share}`)
  })

  it('refuses bad validator sets by name', () => {
    assert.throws(() => proposer([], 0, 0), { name: 'InvalidValidatorSetError' })
    assert.throws(() => proposer([{ id: 'a', power: 1 }, { id: 'a', power: 2 }], 0, 0), InvalidValidatorSetError)
    assert.throws(() => proposer([{ id: 'a', power: 0 }], 0, 0), InvalidValidatorSetError)
    assert.throws(() => proposer([{ id: 'a', power: 1.5 }], 0, 0), InvalidValidatorSetError)
    assert.throws(() => proposer([{ id: 'a', power: Number.MAX_SAFE_INTEGER }], 0, 0), InvalidValidatorSetError)
    assert.throws(() => proposer(equalSet(2), -1, 0), InvalidConsensusInputError)
  })
})

// ---------------------------------------------------------------- upon-rules

describe('upon-rules', () => {
  it('L10-21: start arms timeoutPropose; the proposer asks for a value and proposes it (L19)', () => {
    const { first } = setup()
    assert.deepEqual(first, [{ type: 'schedule-timeout', step: 'propose', height: 1, round: 0, ms: DEFAULT_TIMEOUTS.propose }])
    const { c, first: p } = setup({ self: idOf(1) })
    assert.deepEqual(p[0], { type: 'need-value', height: 1, round: 0 })
    const a = c.step({ type: 'value-ready', height: 1, round: 0, value: 'A' })
    assert.deepEqual(ofType(a, 'propose').map(x => x.proposal), [{ height: 1, round: 0, polRound: -1, value: 'A', proposer: idOf(1) }])
    assert.deepEqual(votesIn(a), [{ type: 'prevote', height: 1, round: 0, value: 'A', validator: idOf(1) }], 'L22 on our own proposal')
    assert.deepEqual(c.step({ type: 'value-ready', height: 1, round: 0, value: 'B' }), [], 'one proposal per round')
  })

  it('L22-27: prevotes a valid proposal, nil for an invalid one; ignores proposals not from the proposer', () => {
    const { c, vs } = setup()
    assert.deepEqual(c.step({ type: 'proposal', proposal: { height: 1, round: 0, polRound: -1, value: 'A', proposer: idOf(2) }, valid: true }), [])
    assert.equal(c.state.step, 'propose')
    assert.deepEqual(votesIn(c.step(proposal(vs, 0, 'A'))), [{ type: 'prevote', height: 1, round: 0, value: 'A', validator: idOf(0) }])
    assert.equal(c.state.step, 'prevote')
    const { c: d } = setup()
    assert.deepEqual(votesIn(d.step(proposal(vs, 0, 'A', -1, false))).map(v => v.value), [null])
  })

  it('L57-60: timeoutPropose prevotes nil; stale timeouts do nothing', () => {
    const { c } = setup()
    assert.deepEqual(c.step(timeout('propose', 1)), [])
    assert.deepEqual(c.step(timeout('prevote', 0)), [])
    assert.deepEqual(votesIn(c.step(timeout('propose', 0))).map(v => [v.type, v.value]), [['prevote', null]])
    assert.deepEqual(c.step(timeout('propose', 0)), [])
  })

  it('L34-35 and L61-64: 2f+1 prevotes of any kind arm timeoutPrevote once; it precommits nil', () => {
    const { c, vs } = setup()
    c.step(proposal(vs, 0, 'A'))
    assert.deepEqual(c.step(prevote(1, 0, null)), [])
    const a = c.step(prevote(2, 0, 'B'))
    assert.deepEqual(a, [{ type: 'schedule-timeout', step: 'prevote', height: 1, round: 0, ms: DEFAULT_TIMEOUTS.prevote }])
    assert.deepEqual(c.step(prevote(3, 0, 'C')), [], 'only the first time')
    assert.deepEqual(votesIn(c.step(timeout('prevote', 0))), [{ type: 'precommit', height: 1, round: 0, value: null, validator: idOf(0) }])
    assert.equal(c.state.lockedRound, -1)
  })

  it('L36-43: a proposal and 2f+1 prevotes for it lock and precommit it', () => {
    const { c, vs } = setup()
    c.step(proposal(vs, 0, 'A'))
    assert.deepEqual(c.step(prevote(1, 0, 'A')), [])
    const a = c.step(prevote(2, 0, 'A'))
    assert.deepEqual(votesIn(a), [{ type: 'precommit', height: 1, round: 0, value: 'A', validator: idOf(0) }])
    assert.deepEqual({ ...c.state }, { height: 1, round: 0, step: 'precommit', lockedValue: 'A', lockedRound: 0, validValue: 'A', validRound: 0, decision: null })
  })

  it('L36-43 at step precommit: sets validValue but neither locks nor precommits again', () => {
    const { c, vs } = setup()
    feed(c, [proposal(vs, 0, 'A'), timeout('prevote', 0)]) // precommitted nil
    const a = feed(c, [prevote(1, 0, 'A'), prevote(2, 0, 'A')])
    assert.deepEqual(votesIn(a), [])
    assert.equal(c.state.lockedRound, -1)
    assert.equal(c.state.validValue, 'A')
    assert.equal(c.state.validRound, 0)
  })

  it('L44-46: 2f+1 prevotes for nil precommit nil', () => {
    const { c } = setup()
    c.step(timeout('propose', 0))
    assert.deepEqual(c.step(prevote(1, 0, null)), [])
    assert.deepEqual(votesIn(c.step(prevote(2, 0, null))).map(v => [v.type, v.value]), [['precommit', null]])
  })

  it('L47-48 and L65-67: 2f+1 precommits of any kind arm timeoutPrecommit once; it starts the next round', () => {
    const { c } = setup()
    feed(c, [precommit(1, 0, null), precommit(2, 0, 'X')])
    assert.deepEqual(c.step(precommit(3, 0, null)), [{ type: 'schedule-timeout', step: 'precommit', height: 1, round: 0, ms: DEFAULT_TIMEOUTS.precommit }])
    const a = c.step(timeout('precommit', 0))
    assert.equal(c.state.round, 1)
    assert.equal(c.state.step, 'propose')
    assert.deepEqual(a, [{ type: 'schedule-timeout', step: 'propose', height: 1, round: 1, ms: DEFAULT_TIMEOUTS.propose + DEFAULT_TIMEOUTS.proposeDelta }])
  })

  it('L49-54: a proposal and 2f+1 precommits for it decide, at any round', () => {
    const { c, vs } = setup()
    c.step(proposal(vs, 0, 'A'))
    feed(c, [timeout('propose', 0), timeout('prevote', 0), timeout('precommit', 0)]) // now round 1
    assert.equal(c.state.round, 1)
    feed(c, [precommit(1, 0, 'A'), precommit(2, 0, 'A')])
    const a = c.step(precommit(3, 0, 'A'))
    const commits = ofType(a, 'commit')
    assert.equal(commits.length, 1)
    assert.deepEqual({ ...commits[0], precommits: commits[0].precommits.map(v => v.validator).sort() }, { type: 'commit', height: 1, round: 0, value: 'A', precommits: [1, 2, 3].map(idOf) })
    assert.equal(c.state.step, 'commit')
    assert.deepEqual(c.step(precommit(0, 1, 'B')), [], 'nothing more at a decided height')
  })

  it('L49 needs the proposal: asks for it with need-proposal, decides when it comes; never an invalid one', () => {
    const { c, vs } = setup()
    const a = feed(c, [precommit(1, 0, 'A'), precommit(2, 0, 'A'), precommit(3, 0, 'A')])
    assert.deepEqual(ofType(a, 'need-proposal'), [{ type: 'need-proposal', height: 1, round: 0, value: 'A' }])
    assert.equal(ofType(c.step(proposal(vs, 0, 'A')), 'commit').length, 1)
    const { c: d } = setup()
    const b = feed(d, [proposal(vs, 0, 'A', -1, false), precommit(1, 0, 'A'), precommit(2, 0, 'A'), precommit(3, 0, 'A')])
    assert.equal(ofType(b, 'commit').length, 0)
  })

  it('L55-56: f+1 of the power in a higher round skips to it; f does not', () => {
    const { c } = setup()
    assert.deepEqual(c.step(prevote(1, 3, 'A')), [])
    assert.equal(c.state.round, 0)
    const a = c.step(precommit(2, 3, null))
    assert.equal(c.state.round, 3)
    assert.deepEqual(a, [
      { type: 'need-value', height: 1, round: 3 }, // round 3's proposer is v0: us
      { type: 'schedule-timeout', step: 'propose', height: 1, round: 3, ms: DEFAULT_TIMEOUTS.propose + 3 * DEFAULT_TIMEOUTS.proposeDelta }
    ])
    // By power: one validator holding more than 1/3 of it is f+1 alone.
    const { c: w } = setup({ vs: weightedSet([1, 1, 1, 2]) })
    w.step(prevote(3, 2, null))
    assert.equal(w.state.round, 2)
    // Exactly 1/3 is not more than 1/3.
    const { c: e } = setup({ vs: equalSet(3) })
    e.step(prevote(1, 2, null))
    assert.equal(e.state.round, 0)
  })

  it('counts power, not heads: 2f+1 is more than 2/3 of the power', () => {
    const vs = weightedSet([1, 1, 1, 6]) // total 9: quorum needs > 6
    const { c } = setup({ vs })
    c.step(proposal(vs, 0, 'A'))
    assert.deepEqual(votesIn(feed(c, [prevote(1, 0, 'A'), prevote(2, 0, 'A')])), [], '3 of 9 is no quorum')
    assert.deepEqual(votesIn(c.step(prevote(3, 0, 'A'))).map(v => v.type), ['precommit'], '9 of 9')
    const exact = weightedSet([1, 1, 1]) // total 3: 2 is exactly 2/3, not more
    const { c: e } = setup({ vs: exact })
    e.step(timeout('propose', 0))
    assert.deepEqual(votesIn(e.step(prevote(1, 0, null))).map(v => v.type), [], 'exactly 2/3 is not a quorum')
    assert.deepEqual(votesIn(e.step(prevote(2, 0, null))).map(v => v.type), ['precommit'])
  })

  it('timeouts grow with the round: X + round * XDelta', () => {
    const t = { propose: 10, proposeDelta: 7, prevote: 5, prevoteDelta: 3, precommit: 4, precommitDelta: 2 }
    const { c, first } = setup({ timeouts: t })
    assert.equal(ofType(first, 'schedule-timeout')[0].ms, 10)
    const ms: number[] = []
    for (let r = 0; r < 3; r++) {
      c.step(timeout('propose', r))
      ms.push(...ofType(feed(c, [prevote(1, r, null), prevote(2, r, 'Z')]), 'schedule-timeout').map(a => a.ms))
      c.step(timeout('prevote', r))
      ms.push(...ofType(feed(c, [precommit(1, r, null), precommit(2, r, null)]), 'schedule-timeout').map(a => a.ms))
      ms.push(...ofType(c.step(timeout('precommit', r)), 'schedule-timeout').map(a => a.ms))
    }
    assert.deepEqual(ms, [5, 4, 17, 8, 6, 24, 11, 8, 31])
    assert.throws(() => new Consensus({ self: null, validators: equalSet(1), height: 1, timeouts: { propose: -1 } }), InvalidConsensusInputError)
  })
})

// ---------------------------------------------------------------- locking

describe('locking', () => {
  /** Locks v0 on A at round 0 and moves it to round 1. */
  function lockedOnA (): { c: Consensus, vs: Validator[] } {
    const { c, vs } = setup()
    feed(c, [proposal(vs, 0, 'A'), prevote(1, 0, 'A'), prevote(2, 0, 'A')])
    assert.equal(c.state.lockedValue, 'A')
    c.step(timeout('precommit', 0))
    assert.equal(c.state.round, 1)
    return { c, vs }
  }

  it('L23: a locked validator prevotes nil for another value, and for its locked value again', () => {
    const { c, vs } = lockedOnA()
    assert.deepEqual(votesIn(c.step(proposal(vs, 1, 'B'))).map(v => v.value), [null])
    const { c: d } = lockedOnA()
    assert.deepEqual(votesIn(d.step(proposal(vs, 1, 'A'))).map(v => v.value), ['A'])
  })

  it('L28-33: a proposal with polRound >= lockedRound and 2f+1 prevotes for it unlocks, and only when the prevotes are there', () => {
    const { c, vs } = lockedOnA()
    feed(c, [timeout('propose', 1), timeout('prevote', 1), timeout('precommit', 1)]) // round 2, still locked on A at 0
    assert.deepEqual(c.step(proposal(vs, 2, 'B', 1)), [], 'no POL for B at round 1 yet: wait')
    assert.equal(c.state.step, 'propose')
    feed(c, [prevote(1, 1, 'B'), prevote(2, 1, 'B')])
    assert.equal(c.state.step, 'propose', 'f+1 is no POL')
    const a = c.step(prevote(3, 1, 'B'))
    assert.deepEqual(votesIn(a), [{ type: 'prevote', height: 1, round: 2, value: 'B', validator: idOf(0) }])
  })

  it('L29: a POL from before the lock does not unlock', () => {
    const { c, vs } = setup()
    // Round 0: a POL for B forms (we miss the proposal), we precommit nil.
    feed(c, [timeout('propose', 0), prevote(1, 0, 'B'), prevote(2, 0, 'B'), prevote(3, 0, 'B'), timeout('prevote', 0), timeout('precommit', 0)])
    assert.equal(c.state.lockedRound, -1)
    // Round 1: lock on A.
    feed(c, [proposal(vs, 1, 'A'), prevote(1, 1, 'A'), prevote(2, 1, 'A')])
    assert.deepEqual([c.state.lockedValue, c.state.lockedRound], ['A', 1])
    c.step(timeout('precommit', 1))
    // Round 2: B with its round-0 POL: lockedRound 1 > 0, so nil.
    assert.deepEqual(votesIn(c.step(proposal(vs, 2, 'B', 0))).map(v => v.value), [null])
    assert.deepEqual([c.state.lockedValue, c.state.lockedRound], ['A', 1])
  })

  it('L15-16: a proposer with a validValue re-proposes it with validRound as polRound', () => {
    const vs = equalSet(4)
    const { c } = setup({ self: idOf(2) }) // proposer of round 1
    feed(c, [proposal(vs, 0, 'A'), prevote(0, 0, 'A'), prevote(1, 0, 'A')])
    const a = c.step(timeout('precommit', 0))
    assert.deepEqual(ofType(a, 'propose').map(x => x.proposal), [{ height: 1, round: 1, polRound: 0, value: 'A', proposer: idOf(2) }])
    assert.equal(ofType(a, 'need-value').length, 0)
  })
})

// ---------------------------------------------------------------- evidence, limits, snapshots

describe('evidence and ignored input', () => {
  it('a second, different vote yields evidence once; the first counts in the totals, a conflicting one only toward nil or a proposed value', () => {
    const { c, vs } = setup()
    c.step(proposal(vs, 0, 'A'))
    c.step(prevote(1, 0, 'A'))
    const a = c.step(prevote(1, 0, 'B'))
    assert.deepEqual(a, [{ type: 'evidence', a: { type: 'prevote', height: 1, round: 0, value: 'A', validator: idOf(1) }, b: { type: 'prevote', height: 1, round: 0, value: 'B', validator: idOf(1) } }])
    assert.deepEqual(c.step(prevote(1, 0, null)), [], 'once per (height, round, type); and v1 is not counted twice toward 2f+1 of any prevotes (L34 stays off)')
    assert.deepEqual(c.step(prevote(1, 0, 'B')), [])
    assert.deepEqual(c.toJSON().rounds[0].prevotes.map(v => [v.validator, v.value]), [[idOf(0), 'A'], [idOf(1), 'A'], [idOf(1), null]], 'B has no proposal: not kept')
    assert.deepEqual(votesIn(c.step(prevote(2, 0, 'A'))).map(v => v.type), ['precommit'], "v1's first vote counts toward the quorum")
    // Precommits are a separate slot.
    assert.deepEqual(c.step(precommit(1, 0, 'A')), [])
    assert.equal(ofType(c.step(precommit(1, 0, 'C')), 'evidence').length, 1)
  })

  it("a conflicting vote counts toward its own proposed value, as in the paper, so a quorum another validator saw can be seen by all", () => {
    const { c, vs } = setup()
    feed(c, [proposal(vs, 0, 'A'), proposal(vs, 0, 'B')]) // an equivocating proposer; we prevote A
    feed(c, [prevote(2, 0, 'A'), prevote(2, 0, 'B'), prevote(3, 0, 'B')])
    assert.equal(c.state.step, 'prevote')
    const a = c.step(prevote(1, 0, 'B'))
    assert.deepEqual(votesIn(a), [{ type: 'precommit', height: 1, round: 0, value: 'B', validator: idOf(0) }], "B's 2f+1 includes v2's conflicting prevote")
    assert.deepEqual([c.state.lockedValue, c.state.lockedRound], ['B', 0])
  })

  it('ignores non-validators, other heights, duplicates and malformed-but-typed nonsense; throws on malformed input', () => {
    const { c } = setup()
    const before = JSON.stringify(c.toJSON())
    assert.deepEqual(c.step({ type: 'vote', vote: { type: 'prevote', height: 1, round: 0, value: 'A', validator: 'did:key:zStranger' } }), [])
    assert.deepEqual(c.step(prevote(1, 0, 'A', 0)), [])
    assert.deepEqual(c.step(prevote(1, 0, 'A', 3)), [])
    assert.equal(JSON.stringify(c.toJSON()), before)
    c.step(prevote(1, 0, 'A'))
    const once = JSON.stringify(c.toJSON())
    assert.deepEqual(c.step(prevote(1, 0, 'A')), [])
    assert.equal(JSON.stringify(c.toJSON()), once)
    const bad: unknown[] = [
      null, { type: 'nope' }, { type: 'vote', vote: { type: 'prevote', height: 1, round: -1, value: 'A', validator: idOf(1) } },
      { type: 'vote', vote: { type: 'precommit', height: 1, round: 0, value: '', validator: idOf(1) } },
      { type: 'vote', vote: { type: 'commit', height: 1, round: 0, value: 'A', validator: idOf(1) } },
      { type: 'proposal', proposal: { height: 1, round: 0, polRound: -2, value: 'A', proposer: idOf(1) }, valid: true },
      { type: 'proposal', proposal: { height: 1, round: 0, polRound: -1, value: 'A', proposer: idOf(1) } },
      { type: 'timeout', step: 'commit', height: 1, round: 0 }, { type: 'value-ready', height: 1.5, round: 0, value: 'A' },
      { type: 'vote', vote: { type: 'prevote', height: 1, round: 0, value: 'x'.repeat(257), validator: idOf(1) } }
    ]
    for (const input of bad) assert.throws(() => c.step(input as Input), { name: 'InvalidConsensusInputError' }, JSON.stringify(input))
  })

  it('refuses misuse by name: step before start, nextHeight before a commit, bad validator sets', () => {
    const c = new Consensus({ self: idOf(0), validators: equalSet(4), height: 1 })
    assert.throws(() => c.step(prevote(1, 0, 'A')), ConsensusStateError)
    c.start()
    assert.throws(() => c.nextHeight(equalSet(4)), { name: 'ConsensusStateError' })
    assert.throws(() => new Consensus({ self: null, validators: [], height: 1 }), { name: 'InvalidValidatorSetError' })
  })

  it('keeps extra fields of inputs (signed bytes) in commit precommits and evidence', () => {
    const { c, vs } = setup()
    const withBytes = (i: number, value: string): Input => ({ type: 'vote', vote: { type: 'precommit', height: 1, round: 0, value, validator: idOf(i), bytes: Uint8Array.of(i) } as Vote })
    c.step(proposal(vs, 0, 'A'))
    const ev = ofType(feed(c, [withBytes(1, 'A'), withBytes(1, 'B')]), 'evidence')[0]
    assert.deepEqual([(ev.a as unknown as { bytes: Uint8Array }).bytes, (ev.b as unknown as { bytes: Uint8Array }).bytes], [Uint8Array.of(1), Uint8Array.of(1)])
    const commit = ofType(feed(c, [withBytes(2, 'A'), withBytes(3, 'A')]), 'commit')[0]
    assert.deepEqual(commit.precommits.map(v => (v as unknown as { bytes: Uint8Array }).bytes), [1, 2, 3].map(i => Uint8Array.of(i)))
  })
})

describe('limits', () => {
  it(`keeps every round up to round + ${MAX_FUTURE_ROUNDS}, and beyond only each sender's ${MAX_CATCHUP_ROUNDS} highest rounds`, () => {
    const { c } = setup()
    const roundsOf = (id: string): number[] => c.toJSON().rounds.filter(r => [...r.prevotes, ...r.precommits].some(v => v.validator === id)).map(r => r.round)
    for (const r of [1, 2, 3, 4]) c.step(prevote(1, r, null))
    assert.deepEqual(roundsOf(idOf(1)), [1, 2, 3, 4])
    for (const r of [10, 11, 12]) c.step(prevote(1, r, null))
    assert.deepEqual(roundsOf(idOf(1)), [1, 2, 3, 4, 11, 12], 'round 10 evicted by 12')
    c.step(prevote(1, 9, null))
    assert.deepEqual(roundsOf(idOf(1)), [1, 2, 3, 4, 11, 12], 'lower than both kept far rounds: dropped')
    c.step(precommit(1, 12, null))
    assert.deepEqual(roundsOf(idOf(1)), [1, 2, 3, 4, 11, 12], 'another message in a kept round is fine')
    // A far round of f+1 still makes us skip there.
    c.step(prevote(2, 12, null))
    assert.equal(c.state.round, 12)
  })

  it(`buffers height + 1 (rounds <= ${MAX_FUTURE_ROUNDS}, current members, 2 per sender, round and kind) and replays it on nextHeight`, () => {
    const vs = equalSet(4)
    const { c } = setup()
    const h2 = [prevote(1, 0, 'N', 2), prevote(2, 0, 'N', 2), proposal(vs, 0, 'N', -1, true, 2)]
    feed(c, h2)
    feed(c, [prevote(1, MAX_FUTURE_ROUNDS + 1, 'N', 2), prevote(1, 0, 'N', 3)]) // too far: dropped
    feed(c, [prevote(3, 0, 'X1', 2), prevote(3, 0, 'X2', 2), prevote(3, 0, 'X3', 2), prevote(3, 0, 'X1', 2)]) // third value dropped
    c.step({ type: 'vote', vote: { type: 'prevote', height: 2, round: 0, value: 'N', validator: 'did:key:zStranger' } })
    assert.equal(c.toJSON().buffer.length, 5)
    feed(c, [proposal(vs, 0, 'A'), prevote(1, 0, 'A'), prevote(2, 0, 'A'), precommit(1, 0, 'A'), precommit(2, 0, 'A')])
    assert.equal(c.state.step, 'commit')
    const a = c.nextHeight(vs)
    assert.equal(c.state.height, 2)
    // Replayed: the proposal and v1, v2's prevotes for N, v3's double vote (evidence), so we prevote N and precommit it.
    assert.deepEqual(votesIn(a).map(v => [v.type, v.value]), [['prevote', 'N'], ['precommit', 'N']])
    assert.equal(ofType(a, 'evidence').length, 1)
    assert.deepEqual(c.toJSON().buffer, [])
  })

  it(`keeps ${MAX_PROPOSALS_PER_ROUND} proposals per round, more only when more than 1/3 of the power voted for them`, () => {
    const vs = equalSet(4)
    const { c } = setup()
    for (const v of ['A', 'B', 'C', 'D', 'E']) c.step(proposal(vs, 0, v))
    assert.deepEqual(c.toJSON().rounds[0].proposals.map(e => e.proposal.value), ['A', 'B', 'C'])
    feed(c, [precommit(2, 0, 'Z'), precommit(3, 0, 'Z')])
    c.step(proposal(vs, 0, 'Z'))
    assert.deepEqual(c.toJSON().rounds[0].proposals.map(e => e.proposal.value), ['A', 'B', 'C', 'Z'])
    assert.equal(ofType(c.step(precommit(1, 0, 'Z')), 'commit').length, 1)
  })
})

describe('heights, followers, devnet', () => {
  it('a single validator decides alone in one step (the embedded devnet)', () => {
    const vs = [{ id: idOf(0), power: 10 }]
    const { c, first } = setup({ vs })
    assert.deepEqual(first.map(a => a.type), ['need-value', 'schedule-timeout'])
    const a = c.step({ type: 'value-ready', height: 1, round: 0, value: 'B1' })
    assert.deepEqual(a.map(x => x.type), ['propose', 'vote', 'vote', 'commit'])
    const b = c.nextHeight(vs)
    assert.deepEqual(b, [{ type: 'need-value', height: 2, round: 0 }, { type: 'schedule-timeout', step: 'propose', height: 2, round: 0, ms: DEFAULT_TIMEOUTS.propose }])
  })

  it('a non-validator follows to the decision but never votes; nextHeight takes a new set', () => {
    const vs = equalSet(4)
    const { c } = setup({ self: null })
    const a = feed(c, [proposal(vs, 0, 'A'), prevote(1, 0, 'A'), prevote(2, 0, 'A'), prevote(3, 0, 'A'), precommit(1, 0, 'A'), precommit(2, 0, 'A'), precommit(3, 0, 'A')])
    assert.deepEqual(votesIn(a), [])
    assert.equal(ofType(a, 'commit')[0].value, 'A')
    const next = weightedSet([5, 1])
    c.nextHeight(next)
    assert.deepEqual({ ...c.state }, { height: 2, round: 0, step: 'propose', lockedValue: null, lockedRound: -1, validValue: null, validRound: -1, decision: null })
    assert.deepEqual(c.step(prevote(3, 0, 'A', 2)), [], 'v3 left the set')
    assert.equal(c.step(proposal(next, 0, 'Q', -1, true, 2)).length, 0)
    assert.equal(c.toJSON().rounds[0].proposals[0].proposal.proposer, proposer(next, 2, 0))
  })
})

describe('snapshots', () => {
  it('round-trips through JSON; start() on a restored instance re-arms what a crash lost', () => {
    const { c, vs } = setup()
    feed(c, [proposal(vs, 0, 'A'), prevote(1, 0, null), prevote(2, 0, 'B'), prevote(2, 0, 'C'), prevote(1, 5, null), precommit(3, 0, null), prevote(3, 0, 'A', 2)])
    const snap = JSON.parse(JSON.stringify(c.toJSON()))
    const r = Consensus.fromJSON(snap)
    assert.deepEqual(r.toJSON(), c.toJSON())
    assert.deepEqual({ ...r.state }, { ...c.state })
    assert.deepEqual(r.start(), [{ type: 'schedule-timeout', step: 'prevote', height: 1, round: 0, ms: DEFAULT_TIMEOUTS.prevote }])
    assert.deepEqual(r.ownMessages(), [{ type: 'vote', vote: { type: 'prevote', height: 1, round: 0, value: 'A', validator: idOf(0) } }])
    // Both continue identically.
    const more = [precommit(1, 0, null), timeout('prevote', 0), precommit(2, 0, null), timeout('precommit', 0)]
    assert.deepEqual(feed(r, more), feed(c, more))
    assert.throws(() => Consensus.fromJSON({ ...snap, version: 2 } as never), InvalidConsensusInputError)
  })

  it('never signs a second vote for a slot, even from a snapshot whose step was rolled back', () => {
    const { c, vs } = setup()
    c.step(proposal(vs, 0, 'A'))
    const snap = c.toJSON()
    const tampered = Consensus.fromJSON({ ...snap, step: 'propose' })
    assert.deepEqual(votesIn(tampered.step(timeout('propose', 0))), [], 'own prevote for round 0 is recorded: no nil prevote')
    // And a vote carrying our id that we failed to record (an older snapshot) blocks a different one.
    const { c: d } = setup()
    d.step(prevote(0, 0, 'X'))
    assert.deepEqual(votesIn(d.step(proposal(vs, 0, 'A'))), [])
  })
})

// ---------------------------------------------------------------- simulator

type Msg = { kind: 'proposal', proposal: Proposal } | { kind: 'vote', vote: Vote }
/** equivocate: random different values per peer; split: each side of the partition gets one consistent value, the one it leans to. */
type Behaviour = 'honest' | 'silent' | 'equivocate' | 'split'

const SIM_TIMEOUTS: Timeouts = { propose: 200, proposeDelta: 100, prevote: 100, prevoteDelta: 50, precommit: 100, precommitDelta: 50 }
const START = 1
/** How long a validator may sit at one height and round after GST before peers send it its height again. */
const STALL_MS = 500
const isValid = (value: string): boolean => !value.startsWith('bad')
const keyOfMsg = (m: Msg): string => m.kind === 'proposal'
  ? `P/${m.proposal.height}/${m.proposal.round}/${m.proposal.proposer}/${m.proposal.value}/${m.proposal.polRound}`
  : `V/${m.vote.height}/${m.vote.round}/${m.vote.type}/${m.vote.validator}/${m.vote.value}`
const heightOfMsg = (m: Msg): number => m.kind === 'proposal' ? m.proposal.height : m.vote.height
const inputOf = (m: Msg): Input => m.kind === 'proposal' ? { type: 'proposal', proposal: { ...m.proposal }, valid: isValid(m.proposal.value) } : { type: 'vote', vote: { ...m.vote } }

/** Min-heap of events by (time, insertion order): deterministic. */
class EventQueue {
  private readonly heap: Array<{ at: number, seq: number, fn: () => void }> = []
  private seq = 0
  get size (): number { return this.heap.length }
  private less (a: number, b: number): boolean {
    const x = this.heap[a]; const y = this.heap[b]
    return x.at < y.at || (x.at === y.at && x.seq < y.seq)
  }

  push (at: number, fn: () => void): void {
    const h = this.heap
    h.push({ at, seq: this.seq++, fn })
    let i = h.length - 1
    while (i > 0) {
      const p = (i - 1) >> 1
      if (!this.less(i, p)) break
      [h[i], h[p]] = [h[p], h[i]]
      i = p
    }
  }

  pop (): { at: number, fn: () => void } {
    const h = this.heap
    const top = h[0]
    const last = h.pop() as typeof top
    if (h.length > 0) {
      h[0] = last
      let i = 0
      while (true) {
        const l = 2 * i + 1; const r = l + 1
        let m = i
        if (l < h.length && this.less(l, m)) m = l
        if (r < h.length && this.less(r, m)) m = r
        if (m === i) break
        [h[i], h[m]] = [h[m], h[i]]
        i = m
      }
    }
    return top
  }
}

interface SimConfig {
  seed: number
  powers: number[]
  byzantine?: Record<number, Behaviour>
  /** Global stabilisation time: before it messages are dropped with dropRate and delayed up to preGstDelay. */
  gst: number
  dropRate: number
  preGstDelay: number
  /** Before GST, split the honest validators in two groups and drop 90% of the messages between them. */
  partition?: boolean
  /** Largest delay after GST (Δ). */
  delay: number
  /** Heights every honest validator must commit. */
  heights: number
  /** Stop the clock here. */
  until: number
  /** Honest validators down over [from, to): nothing in or out; back with a fresh instance (if they never ran) or from their last snapshot. */
  crashes?: Array<{ node: number, from: number, to: number }>
  /** Random crash-restarts of honest validators (from their write-ahead snapshot) before this time. */
  restartsUntil?: number
  /** Called after each step of validator 0 that emitted a vote or proposal. */
  onSigned?: (sim: Sim, c: Consensus) => void
}

interface SimNode {
  i: number
  id: string
  behaviour: Behaviour
  c: Consensus | null
  crashed: boolean
  incarnation: number
  /** The write-ahead snapshot (JSON), written after every step before acting on it. */
  wal: string
  seen: Set<string>
  store: Map<number, Msg[]>
  hr: string
  hrAtLastCheck: string
  commits: Map<number, number>
  evidence: Set<string>
  /** Votes delivered while at their height and within the kept round window: (validator/h/r/type) -> values. */
  delivered: Map<string, Set<string>>
}

class Sim {
  readonly cfg: SimConfig
  readonly rng: Random
  readonly q = new EventQueue()
  readonly validators: Validator[]
  readonly nodes: SimNode[]
  readonly violations: string[] = []
  readonly decided = new Map<number, string>()
  readonly proposed = new Map<number, Set<string>>()
  /** Everything honest validators signed, across incarnations: `id/h/r/kind` -> value. */
  readonly signed = new Map<string, string>()
  readonly group: number[]
  private readonly splitDone = new Set<string>()
  now = 0
  steps = 0
  lastCommitAt = 0
  fetches = 0

  constructor (cfg: SimConfig) {
    this.cfg = cfg
    this.rng = seeded(cfg.seed)
    this.validators = weightedSet(cfg.powers)
    this.nodes = this.validators.map((v, i) => ({
      i, id: v.id, behaviour: cfg.byzantine?.[i] ?? 'honest', c: null, crashed: false, incarnation: 0, wal: '', seen: new Set(), store: new Map(), hr: '', hrAtLastCheck: '', commits: new Map(), evidence: new Set(), delivered: new Map()
    }))
    this.group = this.nodes.map(() => this.rng() < 0.5 ? 0 : 1)
  }

  get honest (): SimNode[] { return this.nodes.filter(n => n.behaviour === 'honest') }

  run (): this {
    const cfg = this.cfg
    this.splitReact(START, 0, 'proposal')
    for (const n of this.nodes) {
      if (n.behaviour === 'silent' || n.behaviour === 'split') continue
      const crash = cfg.crashes?.find(c => c.node === n.i && c.from === 0)
      if (crash !== undefined) n.crashed = true
      else this.boot(n)
    }
    for (const crash of cfg.crashes ?? []) {
      const n = this.nodes[crash.node]
      if (crash.from > 0) this.q.push(crash.from, () => this.crash(n))
      this.q.push(crash.to, () => this.recover(n))
    }
    if (cfg.restartsUntil !== undefined) {
      for (const n of this.honest) {
        for (let t = 50 + this.rng() * 400; t < cfg.restartsUntil; t += 200 + this.rng() * 800) {
          const down = 1 + this.rng.int(300)
          this.q.push(t, () => { if (!n.crashed) { this.crash(n); this.q.push(this.now + down, () => this.recover(n)) } })
        }
      }
    }
    this.q.push(cfg.gst, () => { for (const n of this.honest) this.catchUp(n) })
    this.q.push(cfg.gst + STALL_MS, () => this.unstall())
    while (this.q.size > 0) {
      const e = this.q.pop()
      if (e.at > cfg.until) break
      this.now = e.at
      e.fn()
      if (this.done()) break
    }
    return this
  }

  done (): boolean {
    return this.honest.every(n => n.commits.has(START + this.cfg.heights - 1))
  }

  private boot (n: SimNode): void {
    n.incarnation++
    n.crashed = false
    n.hr = '' // a restarted node announces its height and round afresh: peers catch it up
    if (n.wal !== '') {
      n.c = Consensus.fromJSON(JSON.parse(n.wal))
      const again = n.c.ownMessages()
      this.handle(n, n.c.start())
      this.handle(n, again) // gossip our signed messages again: they may never have left
    } else {
      n.c = new Consensus({ self: n.id, validators: this.validators, height: START, timeouts: SIM_TIMEOUTS })
      this.handle(n, n.c.start())
    }
    this.checkEpoch(n)
    // Back online, it also serves its peers what it holds for their heights (gossip runs both ways).
    if (this.now >= this.cfg.gst) for (const p of this.honest) if (p !== n && p.c !== null && !p.crashed) this.serve(n, p)
  }

  private crash (n: SimNode): void {
    n.crashed = true
    n.incarnation++ // its timers die with it
    n.c = null
    n.delivered.clear() // what it saw and did not persist is gone; evidence is owed only for what it saw after
  }

  private recover (n: SimNode): void {
    if (!n.crashed) return
    this.boot(n)
  }

  private feed (n: SimNode, input: Input): void {
    if (n.crashed || n.c === null) return
    const st = n.c.state
    if (n.behaviour === 'honest' && input.type === 'vote' && input.vote.height === st.height && st.step !== 'commit' && input.vote.round <= st.round + MAX_FUTURE_ROUNDS) {
      const v = input.vote
      const key = `${v.validator}/${v.height}/${v.round}/${v.type}`
      let set = n.delivered.get(key)
      if (set === undefined) n.delivered.set(key, set = new Set())
      set.add(v.value ?? 'nil')
    }
    this.steps++
    this.handle(n, n.c.step(input))
    if (n.behaviour === 'honest') this.checkEpoch(n)
  }

  private later (n: SimNode, ms: number, input: Input): void {
    const inc = n.incarnation
    this.q.push(this.now + ms, () => { if (n.incarnation === inc) this.feed(n, input) })
  }

  private handle (n: SimNode, actions: Action[]): void {
    const c = n.c
    if (c === null) return
    // The write-ahead contract, at its minimum: persist after a step that signs, before broadcasting.
    if (n.behaviour === 'honest' && actions.some(a => a.type === 'vote' || a.type === 'propose')) n.wal = JSON.stringify(c.toJSON())
    let signedSomething = false
    for (const a of actions) {
      switch (a.type) {
        case 'need-value':
          this.later(n, 1 + this.rng.int(5), { type: 'value-ready', height: a.height, round: a.round, value: `blk-${a.height}-${a.round}-${n.i}` })
          break
        case 'schedule-timeout':
          this.later(n, a.ms, { type: 'timeout', step: a.step, height: a.height, round: a.round })
          break
        case 'propose':
        case 'vote': {
          signedSomething = true
          const m: Msg = a.type === 'propose' ? { kind: 'proposal', proposal: a.proposal } : { kind: 'vote', vote: a.vote }
          if (n.behaviour === 'equivocate') { this.equivocate(n, m); break }
          const key = m.kind === 'proposal' ? `${n.id}/${m.proposal.height}/${m.proposal.round}/proposal` : `${n.id}/${m.vote.height}/${m.vote.round}/${m.vote.type}`
          const value = m.kind === 'proposal' ? m.proposal.value : String(m.vote.value)
          const before = this.signed.get(key)
          if (before !== undefined && before !== value) this.violations.push(`honest ${key} signed ${before} and ${value}`)
          this.signed.set(key, value)
          if (m.kind === 'proposal') this.noteProposed(m.proposal)
          this.broadcast(n, m)
          if (m.kind === 'vote') {
            this.splitReact(m.vote.height, m.vote.round, m.vote.type)
            this.splitReact(m.vote.height, m.vote.round + 1, 'proposal')
          }
          break
        }
        case 'commit': {
          if (n.behaviour === 'honest') {
            const first = this.decided.get(a.height)
            if (first !== undefined && first !== a.value) this.violations.push(`agreement: height ${a.height} decided ${first} and ${a.value}`)
            this.decided.set(a.height, a.value)
            if (this.proposed.get(a.height)?.has(a.value) !== true || !isValid(a.value)) this.violations.push(`validity: ${a.value} at ${a.height} was never validly proposed`)
            if (a.precommits.reduce((s, v) => s + (this.cfg.powers[this.nodes.findIndex(x => x.id === v.validator)] ?? 0), 0) * 3 <= 2 * this.cfg.powers.reduce((s, p) => s + p, 0)) this.violations.push('commit without a quorum of precommits')
            n.commits.set(a.height, this.now)
            this.splitReact(a.height + 1, 0, 'proposal')
            this.lastCommitAt = Math.max(this.lastCommitAt, this.now)
          }
          this.handle(n, c.nextHeight(this.validators))
          break
        }
        case 'evidence': {
          const { a: x, b: y } = a
          if (x.validator !== y.validator || x.height !== y.height || x.round !== y.round || x.type !== y.type || x.value === y.value) this.violations.push('malformed evidence')
          if (this.nodes.find(m => m.id === x.validator)?.behaviour === 'honest') this.violations.push(`evidence against honest ${x.validator}`)
          n.evidence.add(`${x.validator}/${x.height}/${x.round}/${x.type}`)
          break
        }
        case 'need-proposal':
          for (const q of this.honest) {
            if (q === n || q.crashed) continue
            const m = q.store.get(a.height)?.find(m => m.kind === 'proposal' && m.proposal.round === a.round && m.proposal.value === a.value)
            if (m !== undefined) { this.fetches++; this.send(q, n, m) }
          }
          break
      }
    }
    if (signedSomething && n.i === 0 && n.behaviour === 'honest') this.cfg.onSigned?.(this, c)
  }

  private noteProposed (p: Proposal): void {
    let s = this.proposed.get(p.height)
    if (s === undefined) this.proposed.set(p.height, s = new Set())
    s.add(p.value)
  }

  /** A byzantine validator's message, made different for different peers. */
  private equivocate (n: SimNode, m: Msg): void {
    const h = heightOfMsg(m)
    for (const peer of this.nodes) {
      if (peer === n) continue
      const copies = this.rng() < 0.3 ? 2 : 1
      for (let k = 0; k < copies; k++) {
        if (m.kind === 'proposal') {
          const p = m.proposal
          const options = [p.value, `bz-${h}-${p.round}-a`, `bz-${h}-${p.round}-b`, `bad-${h}-${p.round}`]
          const value = options[this.rng.int(options.length)]
          const out: Proposal = { ...p, value, polRound: value === p.value ? p.polRound : -1 }
          this.noteProposed(out)
          this.send(n, peer, { kind: 'proposal', proposal: out })
        } else {
          const v = m.vote
          const known = [...(this.proposed.get(h) ?? [])]
          const options: Array<string | null> = [v.value, null, `bz-${h}-${v.round}-a`, known[this.rng.int(known.length)] ?? null]
          this.send(n, peer, { kind: 'vote', vote: { ...v, value: options[this.rng.int(options.length)] } })
        }
      }
    }
  }

  /**
   * A byzantine validator playing both sides of a partition, with no state machine of its own: it
   * answers every (height, round, step) the honest validators reach, for as long as they do, giving
   * each side the value that side leans to, proposing a different value to each side, and sending
   * its precommit for a value to one side only (so that side may decide while the other moves on).
   */
  private splitReact (h: number, r: number, kind: 'prevote' | 'precommit' | 'proposal'): void {
    for (const b of this.nodes) {
      if (b.behaviour !== 'split') continue
      if (kind === 'proposal' && proposer(this.validators, h, r) !== b.id) continue
      const key = `${b.i}/${h}/${r}/${kind}`
      if (this.splitDone.has(key)) continue
      this.splitDone.add(key)
      this.q.push(this.now + 1 + this.rng.int(10), () => this.splitSend(b, h, r, kind))
    }
  }

  private splitSend (b: SimNode, h: number, r: number, kind: 'prevote' | 'precommit' | 'proposal'): void {
    for (const peer of this.nodes) {
      if (peer === b) continue
      const g = this.group[peer.i]
      const own = `bz-${h}-${r}-${g === 0 ? 'a' : 'b'}`
      if (kind === 'proposal') {
        const p: Proposal = { height: h, round: r, polRound: -1, value: own, proposer: b.id }
        this.noteProposed(p)
        this.send(b, peer, { kind: 'proposal', proposal: p })
        continue
      }
      const counts = new Map<string, number>()
      for (const q of this.honest) {
        if (this.group[q.i] !== g) continue
        const x = this.signed.get(`${q.id}/${h}/${r}/${kind}`)
        if (x !== undefined && x !== 'null') counts.set(x, (counts.get(x) ?? 0) + 1)
      }
      const leaning = [...counts.entries()].sort((x, y) => y[1] - x[1])[0]?.[0] ?? own
      const favoured = (h * 31 + r * 7 + b.i) % 2
      this.send(b, peer, { kind: 'vote', vote: { type: kind, height: h, round: r, value: kind === 'precommit' && g !== favoured ? null : leaning, validator: b.id } })
    }
  }

  private remember (n: SimNode, m: Msg): boolean {
    const key = keyOfMsg(m)
    if (n.seen.has(key)) return false
    n.seen.add(key)
    const h = heightOfMsg(m)
    let list = n.store.get(h)
    if (list === undefined) n.store.set(h, list = [])
    list.push(m)
    return true
  }

  private broadcast (n: SimNode, m: Msg): void {
    this.remember(n, m)
    for (const peer of this.nodes) if (peer !== n) this.send(n, peer, m)
  }

  private send (from: SimNode, to: SimNode, m: Msg): void {
    if (from.crashed) return
    const before = this.now < this.cfg.gst
    if (before && this.rng() < this.cfg.dropRate) return
    if (before && this.cfg.partition === true && from.behaviour === 'honest' && to.behaviour === 'honest' && this.group[from.i] !== this.group[to.i] && this.rng() < 0.9) return
    const delay = 1 + this.rng.int(before ? this.cfg.preGstDelay : this.cfg.delay)
    this.q.push(this.now + delay, () => this.deliver(to, m))
  }

  private deliver (n: SimNode, m: Msg): void {
    if (n.crashed || n.c === null || n.behaviour === 'silent') return
    // Gossip: a correct validator relays what it receives the first time (the paper's assumption).
    if (n.behaviour === 'honest' && this.remember(n, m)) for (const peer of this.nodes) if (peer !== n) this.send(n, peer, m)
    this.feed(n, inputOf(m))
  }

  /** Like CometBFT's peer-state gossip: when a validator moves to a new height or round, peers send it what they hold for its height. */
  private checkEpoch (n: SimNode): void {
    if (n.c === null) return
    const hr = `${n.c.state.height}/${n.c.state.round}`
    if (hr === n.hr) return
    n.hr = hr
    if (this.now >= this.cfg.gst) this.catchUp(n)
  }

  /** CometBFT's gossip keeps sending peers what they lack: a validator stuck at one height and round for STALL_MS gets its height again. */
  private unstall (): void {
    for (const n of this.honest) {
      if (n.c === null || n.crashed) continue
      if (n.hr === n.hrAtLastCheck) this.catchUp(n)
      n.hrAtLastCheck = n.hr
    }
    this.q.push(this.now + STALL_MS, () => this.unstall())
  }

  private catchUp (n: SimNode): void {
    if (n.c === null || n.crashed) return
    for (const q of this.honest) if (q !== n && !q.crashed) this.serve(q, n)
  }

  /** q sends p every message it holds for p's height. */
  private serve (q: SimNode, p: SimNode): void {
    if (p.c === null) return
    for (const m of q.store.get(p.c.state.height) ?? []) this.send(q, p, m)
  }

  /** Double votes shown to honest validators at their height (each must be reported). */
  doubleVotesSeen (): number {
    return this.honest.reduce((s, n) => s + [...n.delivered.values()].filter(v => v.size > 1).length, 0)
  }

  /** Every double vote an honest validator was shown (at its height, in its kept window) it reported. */
  missedEvidence (): string[] {
    const missed: string[] = []
    for (const n of this.honest) {
      for (const [key, values] of n.delivered) if (values.size > 1 && !n.evidence.has(key)) missed.push(`${n.id} missed ${key}`)
    }
    return missed
  }
}

/** Logical ms after GST (or after recovery) by which every honest validator has committed every height: about twice the slowest of ~15,000 soak runs. */
const LIVENESS_BOUND_MS = 10_000

function checkRun (sim: Sim, from = sim.cfg.gst): void {
  assert.deepEqual(sim.violations, [])
  assert.deepEqual(sim.missedEvidence(), [])
  for (const n of sim.honest) {
    for (let h = START; h < START + sim.cfg.heights; h++) assert.ok(n.commits.has(h), `${n.id} did not commit height ${h} by ${sim.now} (gst ${sim.cfg.gst})`)
  }
  assert.ok(sim.lastCommitAt - from <= LIVENESS_BOUND_MS, `commits took ${sim.lastCommitAt - from} ms after ${from}`)
}

const behaviourArb = fc.constantFrom<Behaviour>('honest', 'silent', 'equivocate', 'split', 'split')

describe('simulated network (fast-check, seed 42)', () => {
  it('4 equal validators, up to 1 byzantine: agreement, validity, liveness after GST, evidence', (t) => {
    let worst = 0
    let doubles = 0
    let fetches = 0
    fc.assert(fc.property(fc.nat(), fc.nat(3), behaviourArb, fc.integer({ min: 0, max: 4000 }), fc.double({ min: 0, max: 0.5, noNaN: true }), fc.boolean(), (seed, b, behaviour, gst, dropRate, partition) => {
      const sim = new Sim({ seed, powers: [1, 1, 1, 1], byzantine: { [b]: behaviour }, gst, dropRate, partition, preGstDelay: 400, delay: 30, heights: 5, until: gst + LIVENESS_BOUND_MS + 5000 }).run()
      checkRun(sim)
      worst = Math.max(worst, sim.lastCommitAt - gst)
      doubles += sim.doubleVotesSeen()
      fetches += sim.fetches
    }), { seed: 42, numRuns: 150 })
    t.diagnostic(`slowest run: 5 heights committed ${Math.round(worst)} logical ms after GST (bound ${LIVENESS_BOUND_MS}); ${doubles} double votes seen and reported; ${fetches} proposals fetched on need-proposal`)
    assert.ok(doubles > 100 && fetches > 0, 'the byzantine validators did equivocate, and need-proposal was exercised')
  })

  it('7 validators with unequal powers, byzantine power < 1/3: the same properties', (t) => {
    const powers = [1, 1, 1, 2, 2, 3, 3] // total 13: byzantine power up to 4
    const byzArb = fc.uniqueArray(fc.nat(6), { maxLength: 3 }).filter(ix => ix.reduce((s, i) => s + powers[i], 0) * 3 < 13)
    let worst = 0
    let doubles = 0
    fc.assert(fc.property(fc.nat(), byzArb, fc.array(behaviourArb, { minLength: 3, maxLength: 3 }), fc.integer({ min: 0, max: 4000 }), fc.boolean(), (seed, byz, behaviours, gst, partition) => {
      const byzantine: Record<number, Behaviour> = {}
      byz.forEach((i, k) => { byzantine[i] = behaviours[k] })
      const sim = new Sim({ seed, powers, byzantine, gst, dropRate: 0.3, partition, preGstDelay: 400, delay: 30, heights: 4, until: gst + LIVENESS_BOUND_MS + 5000 }).run()
      checkRun(sim)
      worst = Math.max(worst, sim.lastCommitAt - gst)
      doubles += sim.doubleVotesSeen()
    }), { seed: 42, numRuns: 100 })
    t.diagnostic(`slowest run: 4 heights committed ${Math.round(worst)} logical ms after GST (bound ${LIVENESS_BOUND_MS}); ${doubles} double votes seen and reported`)
  })

  it('honest validators crash and restart from their write-ahead snapshot: never a conflicting signature, still agreement and liveness', () => {
    fc.assert(fc.property(fc.nat(), fc.nat(3), fc.boolean(), (seed, b, withByzantine) => {
      const sim = new Sim({ seed, powers: [1, 1, 1, 1], byzantine: withByzantine ? { [b]: 'split' } : {}, gst: 2000, dropRate: 0.2, partition: true, preGstDelay: 300, delay: 30, heights: 3, until: 2000 + LIVENESS_BOUND_MS + 5000, restartsUntil: 2000 }).run()
      checkRun(sim)
    }), { seed: 42, numRuns: 60 })
  })

  it('a validator restored from the snapshot after each signing, fed other inputs, never signs against what it signed', () => {
    let clones = 0
    fc.assert(fc.property(fc.nat(), seed => {
      const fuzz = seeded(seed ^ 0x5eed)
      const onSigned = (sim: Sim, c: Consensus): void => {
        clones++
        const clone = Consensus.fromJSON(JSON.parse(JSON.stringify(c.toJSON())))
        const mine = new Map(sim.signed)
        const check = (actions: Action[]): void => {
          for (const a of actions) {
            if (a.type !== 'vote' && a.type !== 'propose') continue
            const [key, value] = a.type === 'vote'
              ? [`${a.vote.validator}/${a.vote.height}/${a.vote.round}/${a.vote.type}`, String(a.vote.value)]
              : [`${a.proposal.proposer}/${a.proposal.height}/${a.proposal.round}/proposal`, a.proposal.value]
            const before = mine.get(key)
            assert.ok(before === undefined || before === value, `restored validator signed ${key} = ${value} after ${before}`)
            mine.set(key, value)
          }
        }
        check(clone.start())
        check(clone.ownMessages())
        const pick = fuzz.pick
        for (let k = 0; k < 25 && clone.state.step !== 'commit'; k++) {
          const { height: h, round: r } = clone.state
          const rr = Math.max(0, r + pick([-1, 0, 0, 1, 2]))
          const value = pick(['A', 'B', `blk-${h}-${rr}-1`, null])
          const kind = pick(['vote', 'vote', 'vote', 'proposal', 'timeout', 'ready'])
          const input: Input = kind === 'vote'
            ? { type: 'vote', vote: { type: pick(['prevote', 'precommit'] as const), height: h, round: rr, value, validator: idOf(1 + fuzz.int(3)) } }
            : kind === 'proposal'
              ? { type: 'proposal', proposal: { height: h, round: rr, polRound: pick([-1, rr - 1]), value: value ?? 'A', proposer: proposer(sim.validators, h, rr) }, valid: fuzz() < 0.8 }
              : kind === 'timeout'
                ? { type: 'timeout', step: pick(['propose', 'prevote', 'precommit'] as const), height: h, round: r }
                : { type: 'value-ready', height: h, round: r, value: 'F' }
          check(clone.step(input))
        }
      }
      const sim = new Sim({ seed, powers: [1, 1, 1, 1], gst: 1000, dropRate: 0.2, preGstDelay: 300, delay: 30, heights: 2, until: 30_000, onSigned }).run()
      checkRun(sim)
    }), { seed: 42, numRuns: 30 })
    assert.ok(clones > 150, `restored ${clones} clones`)
  })

  for (const [n, f] of [[4, 1], [7, 2]] as const) {
    it(`${n} validators with f+1 = ${f + 1} crashed: no commit (safety over liveness); commits resume when they come back`, () => {
      for (const seed of [1, 2, 3]) {
        const back = 30_000
        const crashes = Array.from({ length: f + 1 }, (_, k) => ({ node: n - 1 - k, from: 0, to: back }))
        let commitsWhileDown = -1
        const sim = new Sim({ seed, powers: new Array(n).fill(1), gst: 0, dropRate: 0, preGstDelay: 0, delay: 30, heights: 3, until: back + LIVENESS_BOUND_MS, crashes })
        sim.q.push(back - 1, () => { commitsWhileDown = sim.decided.size })
        sim.run()
        assert.equal(commitsWhileDown, 0, 'a commit happened with more than 1/3 of the power down')
        checkRun(sim, back)
        for (const node of sim.honest) assert.ok((node.commits.get(START) ?? 0) >= back)
      }
    })
  }
})
