/**
 * The gait of an avatar (web/src/avatars/animate.ts), pure: walking starts above WALK_START_SPEED,
 * stops below WALK_STOP_SPEED and not in between (no flicker at one threshold), the walk's weight
 * eases in and out, and the pose moves the legs only while walking.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { Object3D } from 'three'
import { Gait, poseHumanoid, WALK_START_SPEED, WALK_STOP_SPEED } from '../../web/src/avatars/animate.ts'

const DT = 1 / 30

function run (g: Gait, speed: number, seconds: number): void {
  for (let t = 0; t < seconds; t += DT) g.step(DT, speed)
}

describe('avatar gait', () => {
  it('walks above WALK_START_SPEED and stops only below WALK_STOP_SPEED', () => {
    const g = new Gait()
    run(g, WALK_START_SPEED * 0.9, 1)
    assert.equal(g.state, 'idle', 'just under the start speed: still idle')
    run(g, WALK_START_SPEED * 1.1, 1)
    assert.equal(g.state, 'walk')
    assert.ok(g.weight > 0.9, `the walk eased in (${g.weight})`)
    run(g, (WALK_START_SPEED + WALK_STOP_SPEED) / 2, 1)
    assert.equal(g.state, 'walk', 'between the two speeds: keeps walking')
    run(g, WALK_STOP_SPEED * 0.9, 1)
    assert.equal(g.state, 'idle')
    assert.ok(g.weight < 0.1, `the walk eased out (${g.weight})`)
  })

  it('swings the legs while walking, and holds them still when idle', () => {
    const bones = new Map<string, Object3D>()
    const bone = (name: string): Object3D => { let b = bones.get(name); if (b == null) { b = new Object3D(); bones.set(name, b) } return b }
    const swing = (g: Gait, speed: number): number => {
      let lo = Infinity; let hi = -Infinity
      for (let t = 0; t < 2; t += DT) {
        g.step(DT, speed)
        poseHumanoid(bone, g)
        lo = Math.min(lo, bone('leftUpperLeg').rotation.x); hi = Math.max(hi, bone('leftUpperLeg').rotation.x)
      }
      return hi - lo
    }
    const g = new Gait()
    assert.ok(swing(g, 0) < 0.01, 'idle legs stay')
    const slow = swing(g, 1)
    const fast = swing(g, 2.5)
    assert.ok(slow > 0.3, `walking legs swing (${slow} rad)`)
    assert.ok(fast > slow, 'a faster walk swings wider')
    assert.ok(bone('leftUpperArm').rotation.z < -1, 'arms hang down from the T-pose')
  })
})
