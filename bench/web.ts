/**
 * Browser client benchmark: the built bundle's size and how fast the page comes up on loopback,
 * against the browser's own floor measured in the same run. It prints figures and asserts nothing.
 *
 * - Size: every file in web/dist, raw and gzip (level 9), JS and CSS apart.
 * - Load: a real peer (`peerverse start` as a child process on loopback), Debian's Chromium
 *   headless (software WebGL, as on a machine without a GPU). Each run opens a fresh browser
 *   context (empty cache) at the URL the peer prints and times navigation start to the client's
 *   first rendered WebGL frame (its `peerverse:first-frame` mark) and to DOMContentLoaded; then a
 *   reload of the same context (cached hashed assets).
 * - Anchor: in the same browser, a blank page that only creates a WebGL context and draws one
 *   cleared frame: what any WebGL page pays before its own code runs.
 *
 * - Crowds: one page in a space, with 0, 20, 50 and 100 members walking in view (presence
 *   messages handed to the page's event stream, as the peer sends them: test/helpers/crowd.ts);
 *   frame time (the time between animation frames) p50/p99/max over BENCH_WEB_CROWD_MS, each
 *   against the empty scene of the same run (measured first and again last; the ratio is to the
 *   mean of the two p50s). Target: 50 members at most 1.5x the empty scene. Each row says what
 *   was drawn in its last frame: members as their own model (as many as the frame time allows),
 *   as impostors (a picture of their model) and as capsules (near and far count all three).
 *
 * BENCH_WEB_RUNS sets the number of cold loads (default 5). CHROMIUM_PATH overrides /usr/bin/chromium.
 */
import { once } from 'node:events'
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { gzipSync } from 'node:zlib'
import type { Browser } from 'playwright-core'
import { launchChromium, startPeer } from './lib.ts'
import { CROWD_SEND_HZ, crowdInitScript } from '../test/helpers/crowd.ts'

const ROOT = resolve(import.meta.dirname, '..')
const DIST = join(ROOT, 'web/dist')
const RUNS = Number(process.env.BENCH_WEB_RUNS ?? 5)
const CROWD_MS = Number(process.env.BENCH_WEB_CROWD_MS ?? 4000)
/** Members walking in view, in the order measured: the empty scene first and again last. */
const CROWDS = [0, 20, 50, 100, 0]

function kb (n: number): string { return (n / 1024).toFixed(1) + ' KiB' }

function pct (xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor(p * s.length))]
}

async function files (dir: string): Promise<string[]> {
  const out: string[] = []
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name)
    if (e.isDirectory()) out.push(...await files(p))
    else out.push(p)
  }
  return out
}

async function sizes (): Promise<void> {
  let js = 0; let jsGz = 0; let css = 0; let cssGz = 0; let other = 0
  for (const f of await files(DIST)) {
    const bytes = await readFile(f)
    const gz = gzipSync(bytes, { level: 9 }).length
    if (f.endsWith('.js')) { js += bytes.length; jsGz += gz } else if (f.endsWith('.css')) { css += bytes.length; cssGz += gz } else other += (await stat(f)).size
  }
  console.log(`bundle: JS ${kb(js)} (gzip ${kb(jsGz)}), CSS ${kb(css)} (gzip ${kb(cssGz)}), other files ${kb(other)}`)
}

async function main (): Promise<void> {
  await sizes()
  const dir = await mkdtemp(join(tmpdir(), 'peerverse-bench-web-'))
  const { peer, ready: started } = startPeer(ROOT, dir)
  const browser = await launchChromium()
  try {
    const ready = await started
    console.log(`chromium ${browser.version()}, ${RUNS} cold loads`)

    const cold: number[] = []; const dcl: number[] = []; const warm: number[] = []; const floor: number[] = []
    for (let i = 0; i < RUNS; i++) {
      const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } })
      const page = await ctx.newPage()
      await page.goto(ready.url)
      await page.waitForFunction(() => performance.getEntriesByName('peerverse:first-frame').length > 0, null, { timeout: 60_000 })
      const t = await page.evaluate(() => ({
        frame: performance.getEntriesByName('peerverse:first-frame')[0].startTime,
        dcl: (performance.getEntriesByType('navigation')[0] as PerformanceNavigationTiming).domContentLoadedEventEnd
      }))
      cold.push(t.frame)
      dcl.push(t.dcl)
      await page.reload()
      await page.waitForFunction(() => performance.getEntriesByName('peerverse:first-frame').length > 0, null, { timeout: 60_000 })
      warm.push(await page.evaluate(() => performance.getEntriesByName('peerverse:first-frame')[0].startTime))
      await ctx.close()

      // The floor: a fresh context, a blank page that makes a WebGL context and draws one frame.
      const fctx = await browser.newContext({ viewport: { width: 1280, height: 800 } })
      const fpage = await fctx.newPage()
      await fpage.goto('about:blank')
      floor.push(await fpage.evaluate(async () => {
        const t0 = performance.now()
        const canvas = document.createElement('canvas')
        canvas.width = 940; canvas.height = 800
        document.body.appendChild(canvas)
        const gl = canvas.getContext('webgl2')!
        gl.clearColor(0.75, 0.85, 0.95, 1)
        gl.clear(gl.COLOR_BUFFER_BIT)
        await new Promise(resolve => requestAnimationFrame(resolve))
        gl.finish()
        return performance.now() - t0
      }))
      await fctx.close()
    }
    const p50 = pct(cold, 0.5)
    const f50 = pct(floor, 0.5)
    console.log(`page load to first frame, cold (ms): p50 ${p50.toFixed(0)}, max ${Math.max(...cold).toFixed(0)}; DOMContentLoaded p50 ${pct(dcl, 0.5).toFixed(0)}`)
    console.log(`page load to first frame, reload (ms): p50 ${pct(warm, 0.5).toFixed(0)}`)
    console.log(`anchor: a blank page's first WebGL frame (ms): p50 ${f50.toFixed(0)}`)
    console.log(`ratio (ours cold / anchor): ${(p50 / Math.max(f50, 1)).toFixed(1)}x`)
    await crowds(browser, ready.url)
  } finally {
    await browser.close()
    peer.kill('SIGTERM')
    await once(peer, 'exit').catch(() => {})
    await rm(dir, { recursive: true, force: true })
  }
}

/** Frame time with crowds of members walking in view, against the empty scene of the same page. */
async function crowds (browser: Browser, url: string): Promise<void> {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } })
  try {
    await ctx.addInitScript(crowdInitScript, CROWD_SEND_HZ)
    const page = await ctx.newPage()
    await page.goto(url)
    await page.waitForFunction(() => (window as any).peerverse?.did() != null && (window as any).__crowd.ready(), null, { timeout: 60_000 })
    await page.fill('#create-name', 'Crowd bench')
    await page.click('#create-send')
    await page.waitForFunction(() => (window as any).peerverse.space() != null, null, { timeout: 60_000 })
    const space = await page.evaluate(() => (window as any).peerverse.space() as string)
    console.log(`crowds: frame time (ms) over ${CROWD_MS} ms each, members walking in view, ${CROWD_SEND_HZ} frames a second each`)
    // The page settles first (its first refreshes and checks after entering the space).
    await page.waitForTimeout(3000)
    const rows: Array<{ n: number, p: number, line: string }> = []
    for (const n of CROWDS) {
      await page.evaluate(([id, k]) => { (window as any).__crowd.start(id, k) }, [space, n] as const)
      await page.waitForFunction(k => (window as any).peerverse.avatars().length === k, n, { timeout: 60_000 })
      const times = await page.evaluate(async ms => {
        // A second to settle (labels laid out, shaders compiled), then the gaps between frames.
        await new Promise(resolve => setTimeout(resolve, 1000))
        const out: number[] = []
        let last = -1
        await new Promise<void>(resolve => {
          const end = performance.now() + ms
          const f = (t: number): void => {
            if (last >= 0) out.push(t - last)
            last = t
            if (t < end) requestAnimationFrame(f)
            else resolve()
          }
          requestAnimationFrame(f)
        })
        return out
      }, CROWD_MS)
      const p = pct(times, 0.5)
      const stats = await page.evaluate(() => (window as any).peerverse.crowd?.() as { near: number, far: number, tags: number, models?: number, impostors?: number, calls: number, triangles?: number } | undefined)
      const drawn = stats == null ? '' : `; ${stats.near} near, ${stats.far} far, ${stats.models ?? 0} models, ${stats.impostors ?? 0} impostors, ${stats.tags} tags, ${stats.calls} draw calls, ${stats.triangles ?? 0} triangles`
      rows.push({ n, p, line: `  ${String(n).padStart(3)} members: p50 ${p.toFixed(1)}, p99 ${pct(times, 0.99).toFixed(1)}, max ${Math.max(...times).toFixed(1)} (${(1000 / p).toFixed(1)} fps, ${times.length} frames${drawn})` })
    }
    const empties = rows.filter(r => r.n === 0).map(r => r.p)
    const empty = empties.reduce((x, y) => x + y, 0) / empties.length
    for (const r of rows) console.log(r.line + (r.n === 0 ? '' : `, ${(r.p / Math.max(empty, 1e-6)).toFixed(2)}x the empty scene`))
    await page.evaluate(() => { (window as any).__crowd.stop() })
  } finally {
    await ctx.close()
  }
}

await main()
