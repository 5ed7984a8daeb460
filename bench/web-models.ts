/**
 * Model streaming benchmark (part of `npm run bench:web`): a real peer (`peerverse start` on
 * loopback) and Debian's Chromium headless. A large textured GLB (BENCH_WEB_MODEL_MIB, default 20,
 * geometry first and a noise PNG after it, as exporters write them) is added to the peer and
 * placed in a space; the page records when the object first shows each stage: its bounds (JSON
 * chunk in), its untextured geometry (every non-image byte in) and the full model. Prints, asserts
 * nothing. CHROMIUM_PATH overrides /usr/bin/chromium.
 */
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { loadavg, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { launchChromium, startPeer } from './lib.ts'
import { model, png } from '../test/web/models-fixtures.ts'

const ROOT = resolve(import.meta.dirname, '..')
const MIB = Number(process.env.BENCH_WEB_MODEL_MIB ?? 20)

async function main (): Promise<void> {
  // About a third texture (1 MiB of noise per 512x512 RGBA), the rest geometry at 20 + 6 bytes a vertex.
  const side = Math.min(2048, 2 ** Math.round(Math.log2(Math.sqrt(MIB / 3 * 1024 * 1024 / 4))))
  const texture = png(side, side, undefined, 7)
  const vertices = Math.floor((MIB * 1024 * 1024 - texture.length) / 26 / 4) * 4
  const glb = await model({ vertices, image: { data: texture, mime: 'image/png' } })
  const dir = await mkdtemp(join(tmpdir(), 'peerverse-bench-models-'))
  const { peer, ready: started } = startPeer(ROOT, dir)
  const browser = await launchChromium()
  try {
    const ready = await started
    const url = new URL(ready.url)
    const token = url.searchParams.get('token') ?? ''
    const added = await fetch(new URL('/api/v0/content/add?name=large.glb', url), { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: new Uint8Array(glb) })
    const { cid } = await added.json() as { cid: string }
    const page = await (await browser.newContext({ viewport: { width: 1280, height: 800 } })).newPage()
    await page.goto(ready.url)
    await page.waitForFunction(() => (window as any).peerverse?.did() != null && (window as any).peerverse.frames() > 0, null, { timeout: 60_000 })
    await page.fill('#create-name', 'Model bench')
    await page.click('#create-send')
    await page.waitForFunction(() => (window as any).peerverse.space() != null, null, { timeout: 60_000 })
    // Each frame, note when the object first shows each stage.
    await page.evaluate(c => {
      const seen: Record<string, number> = {}
      ;(window as any).__modelStages = seen
      const f = (): void => {
        const o = (window as any).peerverse.objects().find((x: { model: string }) => x.model === c)
        if (o != null) seen[o.stage] ??= performance.now()
        if (seen.full == null && seen.failed == null) requestAnimationFrame(f)
      }
      requestAnimationFrame(f)
    }, cid)
    await page.fill('#place-cid', cid)
    await page.click('#place-send')
    await page.waitForFunction(() => { const s = (window as any).__modelStages; return s.full != null || s.failed != null }, null, { timeout: 300_000 })
    const s = await page.evaluate(() => (window as any).__modelStages as Record<string, number>)
    const t0 = s.loading ?? Math.min(...Object.values(s))
    const at = (k: string): string => s[k] == null ? 'not shown' : `${(s[k] - t0).toFixed(0)} ms`
    const err = s.failed != null ? await page.evaluate(c => (window as any).peerverse.objects().find((x: { model: string }) => x.model === c)?.error, cid) : undefined
    console.log(`model streaming: a ${(glb.length / 1048576).toFixed(1)} MiB GLB (${vertices} vertices, ${side}x${side} PNG after the geometry) from our peer, from the object's placement:`)
    console.log(`  bounds ${at('bounds')}, untextured geometry ${at('geometry')}, full ${at('full')}${err != null ? `, failed: ${String(err)}` : ''} (load average ${loadavg()[0].toFixed(1)})`)
  } finally {
    await browser.close()
    peer.kill('SIGTERM')
    await once(peer, 'exit').catch(() => {})
    await rm(dir, { recursive: true, force: true })
  }
}

await main()
