/**
 * The far members' cost does not grow with the space: beacon intervals stretch with the roster so
 * a member receives a bounded number of beacons a second, and a far member counts as gone only
 * after it missed two of its (stretched) still beacons.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import {
  BEACON_MOVING_MS, BEACON_STILL_MS, BEACONS_IN_MOVING_PER_SECOND, BEACONS_IN_STILL_PER_SECOND, beaconInterval, goneAfter, MEMBER_GONE_MS
} from '../../src/space/index.ts'

describe('beacon intervals', () => {
  it('small spaces beacon at the base rates', () => {
    assert.equal(beaconInterval(true, 2), BEACON_MOVING_MS)
    assert.equal(beaconInterval(false, 2), BEACON_STILL_MS)
    assert.equal(goneAfter(2), MEMBER_GONE_MS)
  })

  it('beacons received per second stay bounded however large the space', () => {
    for (const roster of [10, 50, 100, 1000, 4096]) {
      const moving = roster / (beaconInterval(true, roster) / 1000)
      const still = roster / (beaconInterval(false, roster) / 1000)
      assert.ok(moving <= BEACONS_IN_MOVING_PER_SECOND + 1e-9, `moving: ${moving}/s with ${roster}`)
      assert.ok(still <= BEACONS_IN_STILL_PER_SECOND + 1e-9, `still: ${still}/s with ${roster}`)
    }
    // Past the point where the bound bites, the rate is the bound (the interval grows, not the rate).
    assert.equal(beaconInterval(true, 1000), 1000 * 1000 / BEACONS_IN_MOVING_PER_SECOND)
  })

  it('a far member is gone only after missing two still beacons', () => {
    for (const roster of [2, 100, 1000, 4096]) assert.ok(goneAfter(roster) > 2 * beaconInterval(false, roster), `roster ${roster}`)
  })
})
