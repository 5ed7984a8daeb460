/**
 * How many members are drawn as their own animated model, from the measured frame time: one fewer
 * or more (in proportion to the excess) when frames have been slower than FRAME_BUDGET_MS, one more when they have been
 * faster than FRAME_RAISE_MS (well under the budget, so the count does not swing), never below
 * MIN_DETAILED_AVATARS nor above the crowd's most. The others are drawn as impostors.
 */

/** Frame time (ms) over which the count of detailed avatars goes down (25 frames a second). */
export const FRAME_BUDGET_MS = 40
/** Frame time (ms) under which it may go up again. */
export const FRAME_RAISE_MS = 28
/** Members always drawn as their own model, however slow the frames (the nearest). */
export const MIN_DETAILED_AVATARS = 1
/** Time (ms) between two changes of the count, so each is measured before the next. */
export const GOVERNOR_STEP_MS = 750
/** Frames measured after a change before the next. */
export const GOVERNOR_MIN_FRAMES = 5
/** Weight of a new frame in the running frame time (an exponential average). */
export const FRAME_SMOOTHING = 0.2

export class DetailGovernor {
  /** Members drawn in detail now. */
  limit: number
  /** The running frame time (ms). */
  frameMs = 0
  private readonly max: number
  private changedAt = 0
  private frames = 0

  constructor (max: number) {
    this.max = Math.max(MIN_DETAILED_AVATARS, max)
    this.limit = this.max
  }

  /**
   * One frame took `ms`, at `now` (ms); `wanted` is how many would be detailed with no limit (the
   * count goes down from the number drawn, and up only while more are wanted). Returns the limit.
   */
  frame (ms: number, now: number, wanted: number): number {
    if (!(ms > 0) || ms > 1000) return this.limit
    this.frames++
    this.frameMs = this.frames === 1 ? ms : this.frameMs + (ms - this.frameMs) * FRAME_SMOOTHING
    if (this.frames < GOVERNOR_MIN_FRAMES || now - this.changedAt < GOVERNOR_STEP_MS) return this.limit
    const held = Math.min(this.limit, wanted)
    if (this.frameMs > FRAME_BUDGET_MS && held > MIN_DETAILED_AVATARS) {
      // Down in proportion to how far over the budget the frames are (at least one), at once.
      const cut = Math.max(1, Math.floor(held * (1 - FRAME_BUDGET_MS / this.frameMs)))
      this.change(Math.max(MIN_DETAILED_AVATARS, held - cut), now)
    } else if (this.frameMs < FRAME_RAISE_MS && this.limit < this.max && wanted > this.limit) {
      this.change(this.limit + 1, now)
    }
    return this.limit
  }

  /** A new limit; the frame time is measured afresh from here. */
  private change (limit: number, now: number): void {
    this.limit = limit
    this.changedAt = now
    this.frames = 0
  }
}
