/**
 * Putting a board's chunks back together into whole encoded frames (pure, no browser): chunks of
 * a frame are collected by seq, at most MAX_PENDING_FRAMES frames at once (older ones are given
 * up), and a frame is handed on when complete, with whether frames were lost before it. A seq
 * that goes back by SEQ_RESET_GAP or more is a new run of the sharer's stream (its page or its
 * peer restarted and counts from 0 again, or the u32 wrapped): it starts over rather than being
 * dropped as old, so the board does not freeze.
 */
import type { Chunk } from './wire.ts'

/** Frames being put together at once; older ones are given up. */
export const MAX_PENDING_FRAMES = 4
/** A seq this far behind the last frame's (or more) starts a new run of the stream. */
export const SEQ_RESET_GAP = 16

export interface Assembled { seq: number, key: boolean, ts: number, data: Uint8Array, gap: boolean }

interface Pending { key: boolean, ts: number, count: number, got: number, parts: Array<Uint8Array | undefined> }

export class FrameAssembler {
  /** The seq of the last frame handed on (-1: none yet). */
  lastSeq = -1
  /** Frames given up; runs started over. */
  lost = 0
  resets = 0
  private readonly pending = new Map<number, Pending>()

  /** One chunk; the frame it completes, if it does. */
  take (c: Chunk): Assembled | undefined {
    if (c.index >= c.count) return undefined
    let reset = false
    if (c.seq <= this.lastSeq) {
      if (this.lastSeq - c.seq < SEQ_RESET_GAP) return undefined
      this.pending.clear()
      this.lastSeq = -1
      this.resets++
      reset = true
    }
    let p = this.pending.get(c.seq)
    if (p == null) {
      p = { key: c.key, ts: c.ts, count: c.count, got: 0, parts: new Array(c.count) }
      this.pending.set(c.seq, p)
      for (const seq of [...this.pending.keys()].sort((a, b) => a - b).slice(0, Math.max(0, this.pending.size - MAX_PENDING_FRAMES))) { this.pending.delete(seq); this.lost++ }
    }
    if (p.count !== c.count || p.parts[c.index] != null) return undefined
    p.parts[c.index] = c.data
    if (++p.got < p.count) return undefined
    this.pending.delete(c.seq)
    for (const seq of this.pending.keys()) if (seq < c.seq) { this.pending.delete(seq); this.lost++ }
    const gap = reset || this.lastSeq < 0 || c.seq !== this.lastSeq + 1
    this.lastSeq = c.seq
    const data = new Uint8Array(p.parts.reduce((n, x) => n + (x?.length ?? 0), 0))
    let o = 0
    for (const x of p.parts) { data.set(x as Uint8Array, o); o += (x as Uint8Array).length }
    return { seq: c.seq, key: p.key, ts: p.ts, data, gap }
  }
}
