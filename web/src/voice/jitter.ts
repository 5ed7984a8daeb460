/**
 * The adaptive jitter buffer of one speaker: pure timing logic on plain numbers (seconds of the
 * AudioContext clock), no Web Audio, so the decisions can be followed and tested on their own.
 *
 * How it adapts. For every frame that arrives, transit = arrival - ts (the sender's ms clock; the
 * two clocks' offset cancels out). Over the last JITTER_WINDOW frames, jitter = max(transit) -
 * min(transit): how much later than the fastest frame the slowest one came. The target buffering
 * is target = clamp(jitter + DECIDE_LEAD_S + SAFETY_S, MIN_DELAY_MS, MAX_DELAY_MS). The delay a
 * frame actually gets is its play time minus the time the fastest path would have brought it
 * (ts + min transit). Every ADAPT_EVERY frames the buffer compares the two: below the target by
 * more than STRETCH_BELOW_S it stretches (one concealment frame is inserted: the timeline moves
 * 20 ms later), above it by more than SHRINK_ABOVE_S it shrinks (one frame is skipped: 20 ms
 * earlier). A spike of jitter thus grows the delay within a few frames; calm lets it fall back
 * slowly, as the window forgets the spike. When a speaker stops, the buffer goes idle and the next
 * talk spurt starts afresh at its first frame's arrival plus the target.
 *
 * Late frames: a frame whose slot was already decided (played, concealed or skipped) is dropped.
 * Missing frames: when a slot's decision time comes (DECIDE_LEAD_S before it plays) and its frame
 * is not there, the buffer asks for concealment, at most MAX_CONCEAL_FRAMES in a row; then it
 * leaves silence while later frames exist, or goes idle when none came.
 */
import { seqDiff } from './wire.ts'

/** One Opus frame, in seconds. */
export const FRAME_S = 0.02
/** Bounds of the buffering delay. */
export const MIN_DELAY_MS = 20
export const MAX_DELAY_MS = 200
/** A slot is decided (played, concealed) this long before it plays: the pump's period and margin. */
export const DECIDE_LEAD_S = 0.03
/** Added to the measured jitter. */
export const SAFETY_S = 0.01
/** Frames over which jitter is measured. */
export const JITTER_WINDOW = 100
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
  /** Mean delay of the played frames over the fastest path, and the current target (ms). */
  delayMs: number
  targetMs: number
  jitterMs: number
}

interface Entry<T> { ts: number, arrival: number, item: T }

export class JitterBuffer<T> {
  private readonly entries = new Map<number, Entry<T>>()
  private nextSeq: number | undefined
  private nextTime = 0
  private readonly transits: number[] = []
  private tsBase: number | undefined
  private inRow = 0
  private sinceAdapt = 0
  private delaySum = 0
  private delayCount = 0
  private lastDelay = 0
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
    if (this.nextSeq !== undefined && seqDiff(seq, this.nextSeq) < 0) { this.stats.late++; return 'late' }
    if (this.entries.has(seq)) { this.stats.duplicate++; return 'duplicate' }
    this.entries.set(seq, { ts, arrival, item })
    this.tsBase ??= ts
    this.transits.push(arrival - seqDiff(ts, this.tsBase) / 1000)
    if (this.transits.length > JITTER_WINDOW) this.transits.shift()
    if (this.nextSeq === undefined) {
      this.nextSeq = seq
      this.nextTime = arrival + this.target()
      this.inRow = 0
    }
    return 'ok'
  }

  /** The measured jitter (s): spread of transit times over the window. */
  jitter (): number {
    if (this.transits.length < 2) return 0
    let lo = Infinity
    let hi = -Infinity
    for (const t of this.transits) { if (t < lo) lo = t; if (t > hi) hi = t }
    return hi - lo
  }

  /** The delay aimed at (s). */
  target (): number {
    return Math.min(MAX_DELAY_MS / 1000, Math.max(MIN_DELAY_MS / 1000, this.jitter() + DECIDE_LEAD_S + SAFETY_S))
  }

  /** Decides every slot due by now: what to play or conceal, and when. */
  pull (now: number): Array<Action<T>> {
    const out: Array<Action<T>> = []
    while (this.nextSeq !== undefined) {
      const seq = this.nextSeq
      // The pump ran too late for this slot (a long task): restart the timeline from now.
      if (this.nextTime < now + 0.002) this.nextTime = now + this.target()
      const e = this.entries.get(seq)
      if (e !== undefined) {
        if (this.adapt(e, out)) continue
        this.entries.delete(seq)
        out.push({ kind: 'play', seq, at: this.nextTime, item: e.item })
        this.stats.played++
        this.inRow = 0
        this.advance()
        continue
      }
      if (now < this.nextTime - DECIDE_LEAD_S) break
      // Missing at its decision time.
      this.entries.delete(seq)
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
    this.stats.jitterMs = this.jitter() * 1000
    return out
  }

  /** Drops everything (the speaker left or was muted). */
  reset (): void {
    this.idle()
    this.transits.length = 0
    this.tsBase = undefined
  }

  /** Every ADAPT_EVERY frames: stretch or shrink towards the target. True when the slot was skipped. */
  private adapt (e: Entry<T>, out: Array<Action<T>>): boolean {
    const fastest = Math.min(...this.transits)
    const delay = this.nextTime - (seqDiff(e.ts, this.tsBase ?? e.ts) / 1000 + fastest)
    this.lastDelay = delay
    this.delaySum += delay
    this.delayCount++
    this.stats.delayMs = this.delaySum / this.delayCount * 1000
    if (++this.sinceAdapt < ADAPT_EVERY) return false
    this.sinceAdapt = 0
    const target = this.target()
    if (delay < target - STRETCH_BELOW_S && delay + FRAME_S <= MAX_DELAY_MS / 1000) {
      out.push({ kind: 'conceal', seq: this.nextSeq as number, at: this.nextTime, step: 1 })
      this.nextTime += FRAME_S
      this.stats.stretched++
      return false
    }
    if (delay > target + SHRINK_ABOVE_S) {
      this.entries.delete(this.nextSeq as number)
      this.nextSeq = ((this.nextSeq as number) + 1) >>> 0
      this.stats.skipped++
      return true
    }
    return false
  }

  /** The current delay of the frames being played (s), for display. */
  get delay (): number { return this.lastDelay }

  private advance (): void {
    this.nextSeq = ((this.nextSeq as number) + 1) >>> 0
    this.nextTime += FRAME_S
  }

  private idle (): void {
    this.nextSeq = undefined
    this.entries.clear()
    this.inRow = 0
  }
}
