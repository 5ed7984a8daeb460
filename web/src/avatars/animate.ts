/**
 * Movement-driven animation of avatars, with no animation files: a gait (idle or walk, with
 * hysteresis so it does not flicker at the threshold) from the member's drawn speed, and a
 * procedural pose of a VRM's normalized humanoid bones (breathing and a slight sway when idle;
 * legs, knees and arms swinging, scaled with speed, when walking). The normalized rig's axes are
 * the same for every VRM (T-pose at rest, facing +z), which is what makes one pose fit all.
 */
import type { Object3D } from 'three'

export type AnimationState = 'idle' | 'walk' | 'none'

/** Speed (m/s) above which a member walks. */
export const WALK_START_SPEED = 0.35
/** Speed (m/s) below which a walking member stops (lower than the start: no flicker). */
export const WALK_STOP_SPEED = 0.15
/** Metres covered by one full walk cycle (two steps) at normal pace. */
export const STRIDE_M = 1.5

/** The gait and its running values, one per avatar instance. */
export class Gait {
  state: 'idle' | 'walk' = 'idle'
  /** Walk phase (radians) and the walk's weight 0..1 (eased, so poses blend). */
  phase = 0
  weight = 0
  /** Seconds since the instance started (idle motion). */
  time = 0
  /** Walk amplitude from speed (about 1 at 1.4 m/s). */
  amp = 0

  /** Advances by dt seconds at the given horizontal speed (m/s). */
  step (dt: number, speed: number): void {
    if (this.state === 'idle' && speed > WALK_START_SPEED) this.state = 'walk'
    else if (this.state === 'walk' && speed < WALK_STOP_SPEED) this.state = 'idle'
    const target = this.state === 'walk' ? 1 : 0
    this.weight += (target - this.weight) * Math.min(1, dt * 6)
    const cycles = Math.min(2.5, Math.max(0.5, speed / STRIDE_M))
    if (this.weight > 0.01) this.phase = (this.phase + dt * cycles * 2 * Math.PI) % (2 * Math.PI)
    else this.phase = 0
    this.amp = Math.min(1.3, Math.max(0.4, speed / 1.4))
    this.time += dt
  }

  /** Height the body rises over a step (metres). */
  bob (): number {
    const w = this.weight * this.amp
    return Math.abs(Math.sin(this.phase)) * 0.035 * w + Math.sin(this.time * 1.6) * 0.003 * (1 - this.weight)
  }
}

/** A normalized bone by name, or null (optional bones may be absent). */
export type BoneOf = (name: string) => Object3D | null

const ARM_DOWN = 1.2

/** Poses a VRM's normalized humanoid for this gait. */
export function poseHumanoid (bone: BoneOf, g: Gait): void {
  const w = g.weight * g.amp
  const s = Math.sin(g.phase)
  const c = Math.cos(g.phase)
  const breath = Math.sin(g.time * 1.6)
  const sway = Math.sin(g.time * 0.7)
  const idle = 1 - g.weight
  set(bone('leftUpperLeg'), -s * 0.5 * w, 0, 0)
  set(bone('rightUpperLeg'), s * 0.5 * w, 0, 0)
  set(bone('leftLowerLeg'), Math.max(0, c) * 0.8 * w, 0, 0)
  set(bone('rightLowerLeg'), Math.max(0, -c) * 0.8 * w, 0, 0)
  set(bone('leftUpperArm'), s * 0.6 * w, 0, -ARM_DOWN + breath * 0.02 * idle)
  set(bone('rightUpperArm'), -s * 0.6 * w, 0, ARM_DOWN - breath * 0.02 * idle)
  set(bone('leftLowerArm'), 0, -0.25 - 0.15 * w, 0)
  set(bone('rightLowerArm'), 0, 0.25 + 0.15 * w, 0)
  set(bone('spine'), 0.02 * breath * idle, s * 0.12 * w, sway * 0.025 * idle)
  set(bone('chest'), 0.025 * breath * idle, 0, 0)
  set(bone('neck'), 0, -s * 0.05 * w, -sway * 0.02 * idle)
}

function set (node: Object3D | null, x: number, y: number, z: number): void {
  node?.rotation.set(x, y, z)
}
