/** Helpers the benchmarks share. */

/** The seeded PRNG the tests use too (mulberry32), so a run replays from its seed. */
export { seeded, seededBytes, type Random } from '../test/helpers/random.ts'

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
