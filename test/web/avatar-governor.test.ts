/**
 * How many members are drawn as their own model (web/src/governor.ts), pure, on a made-up clock:
 * slow frames bring the count down, never below MIN_DETAILED_AVATARS; fast frames bring it back
 * up one at a time, never above the most; frames between FRAME_RAISE_MS and FRAME_BUDGET_MS
 * change nothing (no swinging at one threshold); the count goes up only while more are wanted.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { DetailGovernor, FRAME_BUDGET_MS, FRAME_RAISE_MS, GOVERNOR_STEP_MS, MIN_DETAILED_AVATARS } from '../../web/src/governor.ts'
import { MAX_DETAILED_AVATARS } from '../../web/src/crowd.ts'

/** Runs frames of `ms` each for `seconds` of made-up time, with `wanted` members in range; returns the limits seen. */
function run (g: DetailGovernor, clock: { now: number }, ms: number, seconds: number, wanted: number): number[] {
  const seen: number[] = []
  for (const end = clock.now + seconds * 1000; clock.now < end;) {
    clock.now += ms
    seen.push(g.frame(ms, clock.now, wanted))
  }
  return seen
}

describe('detail governor', () => {
  it('slow frames lower the count to MIN_DETAILED_AVATARS and no further', () => {
    const g = new DetailGovernor(MAX_DETAILED_AVATARS)
    const clock = { now: 0 }
    assert.equal(g.limit, MAX_DETAILED_AVATARS)
    const seen = run(g, clock, FRAME_BUDGET_MS * 4, 30, 50)
    assert.equal(g.limit, MIN_DETAILED_AVATARS)
    assert.ok(seen.every(x => x >= MIN_DETAILED_AVATARS && x <= MAX_DETAILED_AVATARS))
    // Each step down is measured before the next: no two changes closer than GOVERNOR_STEP_MS.
    let last = -Infinity
    for (let i = 1; i < seen.length; i++) {
      if (seen[i] === seen[i - 1]) continue
      const t = (i + 1) * FRAME_BUDGET_MS * 4
      assert.ok(t - last >= GOVERNOR_STEP_MS, `changes ${t - last} ms apart`)
      last = t
    }
  })

  it('fast frames raise it one at a time, to the most and no further, while more are wanted', () => {
    const g = new DetailGovernor(MAX_DETAILED_AVATARS)
    const clock = { now: 0 }
    run(g, clock, FRAME_BUDGET_MS * 4, 30, 50)
    assert.equal(g.limit, MIN_DETAILED_AVATARS)
    const up = run(g, clock, FRAME_RAISE_MS / 2, 60, 50)
    for (let i = 1; i < up.length; i++) assert.ok(up[i] - up[i - 1] <= 1, 'up by one at a time')
    assert.equal(g.limit, MAX_DETAILED_AVATARS)
    // With only three members in range, fast frames do not raise it past what is wanted.
    const h = new DetailGovernor(MAX_DETAILED_AVATARS)
    const c2 = { now: 0 }
    run(h, c2, FRAME_BUDGET_MS * 4, 30, 50)
    run(h, c2, FRAME_RAISE_MS / 2, 60, 3)
    assert.equal(h.limit, 3)
  })

  it('frames between FRAME_RAISE_MS and FRAME_BUDGET_MS leave it where it is', () => {
    const g = new DetailGovernor(MAX_DETAILED_AVATARS)
    const clock = { now: 0 }
    run(g, clock, FRAME_BUDGET_MS * 2, 2, 50)
    const held = g.limit
    assert.ok(held < MAX_DETAILED_AVATARS && held >= MIN_DETAILED_AVATARS, `lowered to ${held}`)
    const seen = run(g, clock, (FRAME_RAISE_MS + FRAME_BUDGET_MS) / 2, 60, 50)
    assert.ok(seen.every(x => x === held), 'unchanged between the two thresholds')
  })

  it('a few members with slow frames are cut from the number drawn, not from the most', () => {
    const g = new DetailGovernor(MAX_DETAILED_AVATARS)
    const clock = { now: 0 }
    run(g, clock, FRAME_BUDGET_MS * 1.5, 2, 5)
    assert.ok(g.limit < 5, `limit ${g.limit} with 5 drawn and slow frames`)
  })
})
