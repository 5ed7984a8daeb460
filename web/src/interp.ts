/**
 * Smooth motion of other members from irregular presence updates: each update carries the
 * sender's clock (`time`), so we place samples on the sender's timeline and draw the member a
 * little in the past (RENDER_DELAY_MS), interpolating between the two samples around that moment
 * (lerp for position, slerp for rotation). The sender's clock offset is estimated as the smallest
 * (arrival − time) seen, which follows one-way delay plus skew without trusting either clock.
 * Far members send a beacon every 2–5 s instead of 20 frames a second; the delay stretches to the
 * gap between their samples so they glide rather than jump, and shrinks again (at most twice real
 * speed) when frames come often. The drawn moment never passes the newest sample, so a late frame
 * means a brief slowdown, never a jump. Pure: no DOM, no three.js.
 */

export type Vec3 = [number, number, number]
export type Quat = [number, number, number, number]

/** How far in the past others are drawn when their updates come at 20 Hz. */
export const RENDER_DELAY_MS = 100
/** The longest delay a slow (far) member is drawn with. */
export const MAX_RENDER_DELAY_MS = 2500
/** Samples kept per member. */
export const MAX_SAMPLES = 64
/** Beyond this gap between our timeline and the target, jump instead of catching up. */
export const SNAP_MS = 5000

interface Sample { t: number, p: Vec3, q: Quat, moving?: boolean }

/** Gap between a member's frames while it moves (20 Hz). */
export const FRAME_INTERVAL_MS = 50

export class Track {
  private samples: Sample[] = []
  /** min(arrival - time): the sender clock's offset plus the smallest delay. */
  private offset = Infinity
  private renderT: number | undefined
  private lastArrival: number | undefined
  private gap = RENDER_DELAY_MS
  private prevGap = RENDER_DELAY_MS
  private lastNow: number | undefined

  /**
   * Adds an update: `time` on the sender's clock, `arrival` on ours (ms); `moving` as the sender
   * says (frames from near members carry it; beacons do not).
   */
  push (time: number, p: Vec3, q: Quat, arrival: number, moving?: boolean): void {
    if (!Number.isFinite(time)) time = arrival
    const last = this.samples[this.samples.length - 1]
    if (last != null && time <= last.t) {
      if (time === last.t) { last.p = p; last.q = q }
      return
    }
    this.offset = Math.min(this.offset, arrival - time)
    if (this.lastArrival != null) {
      this.prevGap = this.gap
      this.gap = arrival - this.lastArrival
    }
    this.lastArrival = arrival
    // A member that stood still and now moves set off just before this frame, not at the last
    // (up to a second old) heartbeat: hold the old pose until then, so the start is not smeared.
    if (last != null && last.moving === false && moving === true && time - last.t > 2 * FRAME_INTERVAL_MS) {
      this.samples.push({ t: time - FRAME_INTERVAL_MS, p: last.p, q: last.q, moving: false })
      this.gap = this.prevGap = FRAME_INTERVAL_MS
    }
    this.samples.push({ t: time, p, q: normalize(q), moving })
    if (this.samples.length > MAX_SAMPLES) this.samples.splice(0, this.samples.length - MAX_SAMPLES)
  }

  /** The delay this member is drawn with now: a little over the longer of its last two gaps. */
  get delay (): number {
    return Math.min(MAX_RENDER_DELAY_MS, Math.max(RENDER_DELAY_MS, Math.max(this.gap, this.prevGap) * 1.2))
  }

  /** Where to draw the member at local time `now` (ms); undefined before any sample. */
  sample (now: number): { p: Vec3, q: Quat } | undefined {
    const s = this.samples
    if (s.length === 0) return undefined
    const target = now - this.offset - this.delay
    if (this.renderT == null || this.lastNow == null || Math.abs(target - this.renderT) > SNAP_MS) {
      this.renderT = target
    } else {
      const dt = Math.max(0, now - this.lastNow)
      const err = target - (this.renderT + dt)
      this.renderT += dt + Math.min(Math.max(err, -dt * 0.5), dt)
      // Behind while the member stood still: skip ahead to where it starts moving, which nobody sees.
      if (err > 0) this.renderT = Math.min(target, this.stillUntil(this.renderT))
    }
    this.lastNow = now
    const last = s[s.length - 1]
    // Never run ahead of what we have: wait at the newest sample, so the next one starts from
    // there (and is caught up with, at most twice real speed) instead of jumping.
    if (this.renderT > last.t) this.renderT = last.t
    const t = this.renderT
    if (t <= s[0].t) return { p: [...s[0].p], q: [...s[0].q] }
    if (t >= last.t) return { p: [...last.p], q: [...last.q] }
    let i = s.length - 2
    while (i > 0 && s[i].t > t) i--
    const a = s[i]
    const b = s[i + 1]
    const k = (t - a.t) / (b.t - a.t)
    // Drop samples well behind the one we are drawing from.
    if (i > 2) s.splice(0, i - 2)
    return { p: lerp3(a.p, b.p, k), q: slerp(a.q, b.q, k) }
  }

  /** The end of the motionless stretch of samples around time t (t itself when moving). */
  private stillUntil (t: number): number {
    const s = this.samples
    let i = s.length - 1
    while (i > 0 && s[i].t > t) i--
    let j = i
    while (j + 1 < s.length && same(s[j], s[j + 1])) j++
    return Math.max(t, s[j].t)
  }

  /** The newest position received (for tests and the debug hook's raw view). */
  latest (): Vec3 | undefined {
    const last = this.samples[this.samples.length - 1]
    return last == null ? undefined : [...last.p]
  }
}

function same (a: Sample, b: Sample): boolean {
  return Math.abs(a.p[0] - b.p[0]) + Math.abs(a.p[1] - b.p[1]) + Math.abs(a.p[2] - b.p[2]) < 1e-3 &&
    Math.abs(a.q[0] * b.q[0] + a.q[1] * b.q[1] + a.q[2] * b.q[2] + a.q[3] * b.q[3]) > 0.99999
}

export function lerp3 (a: Vec3, b: Vec3, k: number): Vec3 {
  return [a[0] + (b[0] - a[0]) * k, a[1] + (b[1] - a[1]) * k, a[2] + (b[2] - a[2]) * k]
}

export function normalize (q: Quat): Quat {
  const n = Math.hypot(q[0], q[1], q[2], q[3])
  return n === 0 || !Number.isFinite(n) ? [0, 0, 0, 1] : [q[0] / n, q[1] / n, q[2] / n, q[3] / n]
}

/** Spherical interpolation between unit quaternions along the shorter arc. */
export function slerp (a: Quat, b: Quat, k: number): Quat {
  let [bx, by, bz, bw] = b
  let cos = a[0] * bx + a[1] * by + a[2] * bz + a[3] * bw
  if (cos < 0) { cos = -cos; bx = -bx; by = -by; bz = -bz; bw = -bw }
  if (cos > 0.9995) {
    return normalize([a[0] + (bx - a[0]) * k, a[1] + (by - a[1]) * k, a[2] + (bz - a[2]) * k, a[3] + (bw - a[3]) * k])
  }
  const theta = Math.acos(cos)
  const sin = Math.sin(theta)
  const wa = Math.sin((1 - k) * theta) / sin
  const wb = Math.sin(k * theta) / sin
  return [a[0] * wa + bx * wb, a[1] * wa + by * wb, a[2] * wa + bz * wb, a[3] * wa + bw * wb]
}

/** A yaw angle (radians about +y) as a quaternion. */
export function yawQuat (yaw: number): Quat {
  return [0, Math.sin(yaw / 2), 0, Math.cos(yaw / 2)]
}
