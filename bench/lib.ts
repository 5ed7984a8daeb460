/** Helpers the benchmarks share. */
import { spawn } from 'node:child_process'
import { join } from 'node:path'

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

/** Debian's Chromium, headless with software WebGL, as the web benchmarks run it (CHROMIUM_PATH overrides). */
export async function launchChromium (): Promise<import('playwright-core').Browser> {
  const { chromium } = await import('playwright-core')
  return await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--use-angle=swiftshader', '--enable-unsafe-swiftshader']
  })
}

/** A `peerverse start` child process on loopback with its data in `dir`; `ready` is its ready line (with the client's `url`). */
export function startPeer (root: string, dir: string): { peer: import('node:child_process').ChildProcessByStdio<null, import('node:stream').Readable, null>, ready: Promise<{ url: string }> } {
  const peer = spawn(process.execPath, [join(root, 'src/cli/main.ts'), 'start', '--data', dir, '--api', '127.0.0.1:0', '--listen', '/ip4/127.0.0.1/tcp/0', '--no-mdns', '--json'], { stdio: ['ignore', 'pipe', 'inherit'] })
  const ready = new Promise<{ url: string }>((resolve, reject) => {
    let buf = ''
    peer.stdout.on('data', d => {
      buf += d
      const line = buf.split('\n').find(l => l.includes('"ready"'))
      if (line != null) resolve(JSON.parse(line))
    })
    peer.once('exit', code => { reject(new Error(`peer exited with ${code}`)) })
  })
  return { peer, ready }
}
