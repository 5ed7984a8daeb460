/**
 * The model pipeline in the browser client: one real peer (a process on loopback), one headless
 * Chromium page. Models added through the content layer and placed in a space: a meshopt GLB, a
 * GLB with a raw RGBA8 KTX2 texture and one with a Basis UASTC KTX2 texture (the transcoder's
 * worker and WebAssembly under the page's CSP) all load in full; a model with too many vertices,
 * a text file and a model with a texture too large each show their named error on the object,
 * and the page keeps drawing frames.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { chromium, type Browser, type Page } from 'playwright-core'
import { PeerSet, ROOT, type CliPeer } from '../helpers/cli-peer.ts'
import { MAX_MODEL_VERTICES, MAX_TEXTURE_SIDE } from '../../web/src/models/limits.ts'
import { ktx2, model, pngClaiming, uastcKtx2 } from './models-fixtures.ts'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const SHOTS = join(ROOT, 'test/screenshots')
const set = new PeerSet()

interface ObjView { id: string, model: string, loaded: boolean, failed: boolean, error?: string, stage: string }

describe('models in the browser client', { timeout: 180_000, skip: existsSync(CHROMIUM) ? false : `no Chromium at ${CHROMIUM}` }, () => {
  let a: CliPeer
  let browser: Browser
  let page: Page
  const problems: string[] = []

  before(async () => {
    await mkdir(SHOTS, { recursive: true })
    a = await set.start()
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--use-angle=swiftshader', '--enable-unsafe-swiftshader']
    })
    page = await (await browser.newContext({ viewport: { width: 1280, height: 800 } })).newPage()
    page.on('pageerror', err => { problems.push(err.message) })
    page.on('console', msg => { if (/Content Security Policy|Refused/.test(msg.text())) problems.push(msg.text()) })
    await page.goto((a.ready as unknown as { url: string }).url)
    await page.waitForFunction(() => (window as any).peerverse?.did() != null && (window as any).peerverse.frames() > 0, null, { timeout: 60_000 })
    await page.fill('#create-name', 'Model yard')
    await page.click('#create-send')
    await page.waitForFunction(() => (window as any).peerverse.space() != null, null, { timeout: 60_000 })
  })

  after(async () => {
    await browser?.close()
    await set.cleanup()
  })

  async function place (name: string, bytes: Uint8Array): Promise<string> {
    const added = await a.api.raw('POST', `/api/v0/content/add?name=${name}`, { body: new Uint8Array(bytes) })
    assert.equal(added.status, 200, name)
    const { cid } = await added.json() as { cid: string }
    await page.fill('#place-cid', cid)
    await page.click('#place-send')
    return cid
  }

  async function settled (cid: string): Promise<ObjView> {
    await page.waitForFunction(c => (window as any).peerverse.objects().some((o: ObjView) => o.model === c && (o.stage === 'full' || o.stage === 'failed')), cid, { timeout: 60_000 })
    return await page.evaluate(c => (window as any).peerverse.objects().find((o: ObjView) => o.model === c), cid) as ObjView
  }

  /** Resolves once the page has run `n` more animation frames (it would not if a load froze it). */
  async function ticks (n: number): Promise<void> {
    const before = await page.evaluate(() => (window as any).peerverse.frames() as number)
    await page.evaluate(async k => { await new Promise<void>(resolve => { let i = 0; const f = (): void => { if (++i >= k) resolve(); else requestAnimationFrame(f) }; requestAnimationFrame(f) }) }, n)
    assert.ok(await page.evaluate(() => (window as any).peerverse.frames() as number) >= before + n - 1, 'the scene drew frames')
  }

  it('meshopt and KTX2 (raw and Basis UASTC) models load in full', async () => {
    const cids = [
      await place('meshopt.glb', await model({ vertices: 4000, meshopt: true })),
      await place('ktx2.glb', await model({ vertices: 4, image: { data: ktx2(8, 8), mime: 'image/ktx2' } })),
      await place('uastc.glb', await model({ vertices: 4, image: { data: uastcKtx2(8, 8), mime: 'image/ktx2' } }))
    ]
    for (const cid of cids) {
      const o = await settled(cid)
      assert.equal(o.stage, 'full', `${cid} (${cids.indexOf(cid)}): ${o.error ?? ''} ${problems.join(' / ')}`)
      assert.equal(o.error, undefined)
    }
    await ticks(5)
  })

  it('too many vertices, a text file and a texture too large each show their named error; frames go on', async () => {
    const bad: Array<[string, Promise<Uint8Array>, string]> = [
      ['vertices.glb', model({ vertices: 40_000, primitives: MAX_MODEL_VERTICES / 40_000 + 1 }), 'TooManyVerticesError'],
      ['notes.txt', Promise.resolve(new TextEncoder().encode('just some words, not a model\n'.repeat(10))), 'NotAModelError'],
      ['texture.glb', model({ vertices: 4, image: { data: pngClaiming(MAX_TEXTURE_SIDE + 1, 1), mime: 'image/png' } }), 'TextureTooLargeError']
    ]
    const cids: Array<[string, string]> = []
    for (const [name, bytes, error] of bad) cids.push([await place(name, await bytes), error])
    for (const [cid, error] of cids) {
      const o = await settled(cid)
      assert.equal(o.stage, 'failed', cid)
      assert.ok(o.error?.startsWith(error + ':'), `${error} expected, got ${o.error ?? 'none'}`)
      // The object's label says it too.
      const label = await page.evaluate(id => document.querySelector(`[data-object-id="${id}"].obj-tag`)?.textContent ?? '', o.id)
      assert.match(label, new RegExp(error))
    }
    await ticks(10)
    await page.screenshot({ path: join(SHOTS, 'models.png') })
    assert.deepEqual(problems, [], 'no uncaught errors or CSP refusals')
  })
})
