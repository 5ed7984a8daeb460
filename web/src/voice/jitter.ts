/**
 * The adaptive jitter buffer of one speaker: pure timing logic on plain numbers (seconds of the
 * AudioContext clock), no Web Audio, so the decisions can be followed and tested on their own.
 *
 * How it adapts. Jitter is measured as RFC 3550 does: for consecutive arrivals, D = (difference of
 * arrival times) - (difference of the sender's timestamps), and J moves 1/16 of the way to |D| each
 * frame; a slow drift between the two clocks hardly moves it. The target delay, how long a frame
 * should wait in the buffer between its arrival and its play time, is
 * target = clamp(JITTER_MULTIPLE * J + DECIDE_LEAD_S + SAFETY_S, MIN_DELAY_MS, MAX_DELAY_MS).
 * The delay each frame actually gets (its slot's time minus its arrival, both on our clock) is
 * averaged over ADAPT_EVERY frames and compared with the target: below it by more than
 * STRETCH_BELOW_S the buffer stretches (one concealment frame is inserted: the timeline moves 20 ms
 * later), above it by more than SHRINK_ABOVE_S it shrinks (one frame is skipped: 20 ms earlier). A
 * late frame stretches at once. So a burst of jitter grows the delay within a frame or two, calm
 * lets it fall back 20 ms at a time, and a drifting clock is followed. When a speaker stops, the
 * buffer goes idle and the next talk spurt starts afresh at its first frame's arrival plus the target.
 *
 * Late frames: a frame whose slot was already decided (played, concealed or skipped) is dropped.
 * Missing frames: when a slot's decision time comes (DECIDE_LEAD_S before it plays) and its frame
 * is not there, the buffer asks for concealment, at most MAX_CONCEAL_FRAMES in a row; then it
 * leaves silence while later frames exist, or goes idle when none came.
 */
import { seqDiff } from './wire.ts'

/** One Opus frame, in seconds. */
export const FRAME_S = 0.02
/** Bounds of the target delay. */
export const MIN_DELAY_MS = 20
export const MAX_DELAY_MS = 200
/** A slot is decided (played, concealed) this long before it plays: the pump's period and margin. */
export const DECIDE_LEAD_S = 0.03
/** Added to the jitter's allowance. */
export const SAFETY_S = 0.01
/** The target allows this many times the mean jitter J. */
export const JITTER_MULTIPLE = 4
/** Frames between two adaptations. */
export const ADAPT_EVERY = 10
export const STRETCH_BELOW_S = 0.005
export const SHRINK_ABOVE_S = 0.025
/** Consecutive missing frames concealed before silence. */
export const MAX_CONCEAL_FRAMES = 5

export type Action<T> =
  | { kind: 'play', seq: number, at: number, item: T }
  /** Repeat the last frame, faded: step 1 is the first missing frame in a row. */
  | { kind: 'conceal', seq: number, at: number, step: number }

export interface JitterStats {
  played: number
  concealed: number
  late: number
  duplicate: number
  skipped: number
  stretched: number
  /** Mean wait of the frames taken, between arrival and play time; the current target; J (ms). */
  delayMs: number
  targetMs: number
  jitterMs: number
}

interface Entry<T> { item: T }

export class JitterBuffer<T> {
  private readonly entries = new Map<number, Entry<T>>()
  private nextSeq: number | undefined
  private nextTime = 0
  private prev: { arrival: number, ts: number } | undefined
  private j = 0
  private inRow = 0
  private windowSum = 0
  private windowCount = 0
  private delaySum = 0
  private delayCount = 0
  readonly stats: JitterStats = { played: 0, concealed: 0, late: 0, duplicate: 0, skipped: 0, stretched: 0, delayMs: 0, targetMs: 0, jitterMs: 0 }

  /** True while a talk spurt is being played out. */
  get active (): boolean { return this.nextSeq !== undefined }

  /** Whether a frame of seq would still be taken (so a late one need not even be decoded). */
  wants (seq: number): boolean {
    return !(this.nextSeq !== undefined && seqDiff(seq, this.nextSeq) < 0) && !this.entries.has(seq)
  }

  /**
   * A frame is ready to play (ts: the sender's ms clock; arrival: when it became playable, i.e.
   * after decoding, so decoder delays count as jitter too). 'late' frames are dropped.
   */
  arrive (seq: number, ts: number, arrival: number, item: T): 'ok' | 'late' | 'duplicate' {
    if (this.prev != null) {
      const d = (arrival - this.prev.arrival) - seqDiff(ts, this.prev.ts) / 1000
      this.j += (Math.abs(d) - this.j) / 16
    }
    this.prev = { arrival, ts }
    if (this.nextSeq !== undefined && seqDiff(seq, this.nextSeq) < 0) {
      this.stats.late++
      this.stretch()
      return 'late'
    }
    if (this.entries.has(seq)) { this.stats.duplicate++; return 'duplicate' }
    this.entries.set(seq, { item })
    if (this.nextSeq === undefined) {
      this.nextSeq = seq
      this.nextTime = arrival + this.target()
      this.inRow = 0
    }
    const delay = this.nextTime + seqDiff(seq, this.nextSeq) * FRAME_S - arrival
    this.delaySum += delay
    this.delayCount++
    this.stats.delayMs = this.delaySum / this.delayCount * 1000
    this.windowSum += delay
    if (++this.windowCount >= ADAPT_EVERY) this.adapt()
    return 'ok'
  }

  /** The mean jitter J (s). */
  jitter (): number { return this.j }

  /** The delay aimed at (s). */
  target (): number {
    return Math.min(MAX_DELAY_MS / 1000, Math.max(MIN_DELAY_MS / 1000, JITTER_MULTIPLE * this.j + DECIDE_LEAD_S + SAFETY_S))
  }

  /** Decides every slot due by now: what to play or conceal, and when. */
  pull (now: number): Array<Action<T>> {
    const out: Array<Action<T>> = []
    while (this.nextSeq !== undefined) {
      const seq = this.nextSeq
      // The pump ran too late for this slot (a long task): restart the timeline from now.
      if (this.nextTime < now + 0.002) this.nextTime = now + this.target()
      if (this.pending > 0) {
        // A stretch: one concealment frame before the next slot.
        this.pending--
        out.push({ kind: 'conceal', seq, at: this.nextTime, step: 1 })
        this.nextTime += FRAME_S
        continue
      }
      const e = this.entries.get(seq)
      if (e !== undefined && this.skip > 0) {
        // A shrink: this frame is skipped; the next one takes its slot, 20 ms sooner than its own.
        this.skip--
        this.entries.delete(seq)
        this.stats.skipped++
        this.nextSeq = (seq + 1) >>> 0
        continue
      }
      if (e !== undefined) {
        this.entries.delete(seq)
        out.push({ kind: 'play', seq, at: this.nextTime, item: e.item })
        this.stats.played++
        this.inRow = 0
        this.advance()
        continue
      }
      if (now < this.nextTime - DECIDE_LEAD_S) break
      // Missing at its decision time.
      const later = this.entries.size > 0
      if (this.inRow < MAX_CONCEAL_FRAMES) {
        this.inRow++
        out.push({ kind: 'conceal', seq, at: this.nextTime, step: this.inRow })
        this.stats.concealed++
        this.advance()
      } else if (later) {
        this.advance()
      } else {
        this.idle()
      }
    }
    this.stats.targetMs = this.target() * 1000
    this.stats.jitterMs = this.j * 1000
    return out
  }

  /** Drops everything (the speaker was muted or left). */
  reset (): void {
    this.idle()
    this.prev = undefined
    this.j = 0
  }

  private pending = 0
  private skip = 0

  /** Every ADAPT_EVERY frames: towards the target, 20 ms at a time. */
  private adapt (): void {
    const mean = this.windowSum / this.windowCount
    this.windowSum = 0
    this.windowCount = 0
    const target = this.target()
    if (mean < target - STRETCH_BELOW_S) this.stretch()
    else if (mean > target + SHRINK_ABOVE_S) this.skip = 1
  }

  private stretch (): void {
    if (this.nextSeq === undefined || this.pending > 0) return
    const waiting = this.nextTime - (this.prev?.arrival ?? this.nextTime)
    if (waiting + FRAME_S > MAX_DELAY_MS / 1000 + DECIDE_LEAD_S) return
    this.pending = 1
    this.skip = 0
    this.stats.stretched++
  }

  private advance (): void {
    this.nextSeq = ((this.nextSeq as number) + 1) >>> 0
    this.nextTime += FRAME_S
  }

  private idle (): void {
    this.nextSeq = undefined
    this.entries.clear()
    this.inRow = 0
    this.pending = 0
    this.skip = 0
    this.windowSum = 0
    this.windowCount = 0
  }
}
