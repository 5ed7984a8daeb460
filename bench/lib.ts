/** Helpers the benchmarks share. */

/** mulberry32: a small seeded PRNG; each call gives the next 32-bit word. */
export function mulberry32Words (seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (s + 0x6D2B79F5) >>> 0
    let t = s
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return (t ^ (t >>> 14)) >>> 0
  }
}

/** mulberry32 as floats in [0, 1). */
export function mulberry32 (seed: number): () => number {
  const next = mulberry32Words(seed)
  return () => next() / 4294967296
}

/** A benchmark's headline figure: ours beside the anchor measured in the same run, and their ratio. */
export interface SummaryRow { figure: string, ours: string, anchor?: string, ratio?: string }

/** Prints summary rows as a table (figure | ours | anchor | ratio). */
export function printSummary (summary: SummaryRow[]): void {
  const rows = summary.map(r => [r.figure, r.ours, r.anchor ?? '-', r.ratio ?? '-'])
  const head = ['figure', 'ours', 'anchor', 'ratio']
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map(r => r[i].length)))
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i])).join(' | ').trimEnd()
  console.log('')
  console.log(line(head))
  console.log(widths.map(w => '-'.repeat(w)).join('-|-'))
  for (const r of rows) console.log(line(r))
}
