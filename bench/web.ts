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
 * BENCH_WEB_RUNS sets the number of cold loads (default 5). CHROMIUM_PATH overrides /usr/bin/chromium.
 */
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { gzipSync } from 'node:zlib'
import { chromium } from 'playwright-core'

const ROOT = resolve(import.meta.dirname, '..')
const DIST = join(ROOT, 'web/dist')
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const RUNS = Number(process.env.BENCH_WEB_RUNS ?? 5)

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
  const peer = spawn(process.execPath, [join(ROOT, 'src/cli/main.ts'), 'start', '--data', dir, '--api', '127.0.0.1:0', '--listen', '/ip4/127.0.0.1/tcp/0', '--no-mdns', '--json'], { stdio: ['ignore', 'pipe', 'inherit'] })
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--use-angle=swiftshader', '--enable-unsafe-swiftshader']
  })
  try {
    const ready = await new Promise<{ url: string }>((resolve, reject) => {
      let buf = ''
      peer.stdout.on('data', d => {
        buf += d
        const line = buf.split('\n').find(l => l.includes('"ready"'))
        if (line != null) resolve(JSON.parse(line))
      })
      peer.once('exit', code => { reject(new Error(`peer exited with ${code}`)) })
    })
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
  } finally {
    await browser.close()
    peer.kill('SIGTERM')
    await once(peer, 'exit').catch(() => {})
    await rm(dir, { recursive: true, force: true })
  }
}

await main()
