/**
 * Crowds in the browser client: a real peer (a process on loopback), one headless Chromium page,
 * and made-up members handed to the page's event stream as the peer would send their presence
 * (test/helpers/crowd.ts). With a crowd in view: at most MAX_TAGS name tags are shown, the nearest
 * first, and no two shown tags' screen rectangles overlap; the count beside the space, the people
 * list's count and its rows agree as members come and go; members beyond the few nearest drawn as
 * their own model are impostors (a picture of their model), with one draw call per model worn.
 * Saves test/screenshots/crowd.png.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { chromium, type Browser, type Page } from 'playwright-core'
import { PeerSet, ROOT, type CliPeer } from '../helpers/cli-peer.ts'
import { CROWD_SEND_HZ, crowdInitScript } from '../helpers/crowd.ts'
import { IMPOSTOR_LOAD_DISTANCE, MAX_DETAILED_AVATARS, MAX_TAGS, TAG_MAX_DISTANCE } from '../../web/src/crowd.ts'
import { MIN_DETAILED_AVATARS } from '../../web/src/governor.ts'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const SHOTS = join(ROOT, 'test/screenshots')
const set = new PeerSet()

interface Shown { did: string, left: number, top: number, right: number, bottom: number }

/** The name tags on screen now, with their rectangles (read between two frames). */
async function shownTags (page: Page): Promise<Shown[]> {
  return await page.evaluate(() => [...document.querySelectorAll<HTMLElement>('#labels .tag')]
    .filter(el => el.style.display !== 'none')
    .map(el => { const r = el.getBoundingClientRect(); return { did: el.dataset.did!, left: r.left, top: r.top, right: r.right, bottom: r.bottom } }))
}

function overlapping (tags: Shown[]): string[] {
  const out: string[] = []
  for (let i = 0; i < tags.length; i++) {
    for (let j = i + 1; j < tags.length; j++) {
      const a = tags[i]; const b = tags[j]
      if (a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom) out.push(`${a.did} / ${b.did}`)
    }
  }
  return out
}

/** The three counts a person reads: beside the space, in the people list's heading, and its rows. */
async function counts (page: Page, space: string): Promise<{ beside: number, heading: string, rows: number }> {
  return await page.evaluate(id => ({
    beside: Number(document.querySelector<HTMLElement>(`#spaces li[data-space="${id}"] .here`)?.dataset.count ?? NaN),
    heading: document.getElementById('people-count')!.textContent!,
    rows: document.querySelectorAll('#people li[data-did]').length
  }), space)
}

describe('crowds in the browser client', { timeout: 180_000, skip: existsSync(CHROMIUM) ? false : `no Chromium at ${CHROMIUM}` }, () => {
  let a: CliPeer
  let browser: Browser
  let page: Page
  let space = ''
  const problems: string[] = []

  before(async () => {
    a = await set.start()
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--use-angle=swiftshader', '--enable-unsafe-swiftshader']
    })
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } })
    await ctx.addInitScript(crowdInitScript, CROWD_SEND_HZ)
    page = await ctx.newPage()
    page.on('pageerror', err => { problems.push(err.message) })
    await page.goto((a.ready as unknown as { url: string }).url)
    await page.waitForFunction(() => (window as any).peerverse?.did() != null && (window as any).__crowd.ready(), null, { timeout: 60_000 })
    await page.fill('#create-name', 'Crowded square')
    await page.click('#create-send')
    await page.waitForFunction(() => (window as any).peerverse.space() != null && document.querySelector('#spaces li.current .here') != null, null, { timeout: 60_000 })
    space = await page.evaluate(() => (window as any).peerverse.space() as string)
  })

  after(async () => {
    await browser?.close()
    await set.cleanup()
  })

  it(`a wide crowd shows at most MAX_TAGS (${MAX_TAGS}) tags, the nearest, none overlapping`, async () => {
    const n = 80
    await page.evaluate(([id, k]) => { (window as any).__crowd.start(id, k, { center: [128, 100], spread: 40, moving: false }) }, [space, n] as const)
    await page.waitForFunction(k => (window as any).peerverse.avatars().length === k && (window as any).peerverse.crowd().tags > 0, n, { timeout: 30_000 })
    // Two frames later the layout has settled on the members' places.
    const frames = await page.evaluate(() => (window as any).peerverse.frames() as number)
    await page.waitForFunction(f => (window as any).peerverse.frames() > f + 2, frames, { timeout: 30_000 })
    const tags = await shownTags(page)
    assert.ok(tags.length <= MAX_TAGS, `${tags.length} tags shown, over ${MAX_TAGS}`)
    assert.ok(tags.length >= 4, `only ${tags.length} tags shown for ${n} members in view`)
    assert.deepEqual(overlapping(tags), [], 'no two shown tags overlap')
    // The hook agrees with the page; tags go to the nearest first: every member left out by the
    // limit is further away than every member shown, and the nearest on screen is shown.
    const avatars = await page.evaluate(() => (window as any).peerverse.avatars() as Array<{ did: string, tag: boolean, tagState: string, distance: number }>)
    assert.deepEqual(new Set(avatars.filter(x => x.tag).map(x => x.did)), new Set(tags.map(t => t.did)))
    const shown = avatars.filter(x => x.tagState === 'shown')
    const limited = avatars.filter(x => x.tagState === 'limit')
    assert.equal(shown.length, tags.length)
    assert.ok(shown.length + limited.length + avatars.filter(x => x.tagState === 'overlap').length > MAX_TAGS, 'more members on screen than tags')
    const furthestShown = Math.max(...shown.map(x => x.distance))
    for (const x of limited) assert.ok(x.distance >= furthestShown, `${x.did} at ${x.distance} m left out while a tag at ${furthestShown} m is shown`)
    const onScreen = avatars.filter(x => x.tagState !== 'out').sort((x, y) => x.distance - y.distance)
    assert.equal(onScreen[0].tagState, 'shown', 'the nearest member on screen shows its tag')
    assert.ok(shown.every(x => x.distance <= TAG_MAX_DISTANCE))
    const stats = await page.evaluate(() => (window as any).peerverse.crowd() as { near: number, far: number, calls: number })
    assert.ok(stats.far > 0 && stats.near > 0, `near and far bodies both drawn (${JSON.stringify(stats)})`)
    await mkdir(SHOTS, { recursive: true })
    await page.screenshot({ path: join(SHOTS, 'crowd.png') })
  })

  it('members beyond the few drawn as their own model are impostors of their avatar; the nearest are their model', async () => {
    // The wide crowd of the test before is still there.
    const n = 80
    await page.waitForFunction(([k, far]) => {
      const p = (window as any).peerverse
      const s = p.crowd()
      const inView = p.avatars().filter((x: { detail: string, distance: number }) => x.detail !== 'hidden' && x.distance <= far)
      return p.avatars().length === k && s.models > 0 && s.models === s.detailLimit && inView.every((x: { loaded: boolean, impostor: boolean }) => x.loaded || x.impostor)
    }, [n, IMPOSTOR_LOAD_DISTANCE] as const, { timeout: 60_000 })
    const { list, stats } = await page.evaluate(() => ({ list: (window as any).peerverse.avatars(), stats: (window as any).peerverse.crowd() })) as { list: Array<{ did: string, detail: string, distance: number, loaded: boolean, impostor: boolean, model: string }>, stats: { models: number, impostors: number, detailLimit: number, calls: number } }
    const inView = list.filter(x => x.detail !== 'hidden').sort((x, y) => x.distance - y.distance)
    const models = inView.filter(x => x.loaded)
    const impostors = inView.filter(x => x.impostor)
    assert.ok(models.length >= MIN_DETAILED_AVATARS && models.length <= MAX_DETAILED_AVATARS, `${models.length} models`)
    assert.equal(models.length, stats.models)
    assert.equal(impostors.length, stats.impostors)
    assert.ok(impostors.length >= inView.length - models.length - inView.filter(x => x.distance > IMPOSTOR_LOAD_DISTANCE).length, `${impostors.length} impostors of ${inView.length} in view`)
    assert.ok(models.every(x => !x.impostor), 'a member is a model or an impostor, not both')
    // The nearest in view are the models.
    assert.deepEqual(inView.slice(0, models.length).map(x => x.did), models.map(x => x.did))
    for (const x of impostors) assert.ok(x.model !== '', `${x.did} wears a model`)
    // One draw per model worn, not per member: the draw calls stay far below the members in view.
    assert.ok(stats.calls < inView.length / 2, `${stats.calls} draw calls for ${inView.length} members in view`)
  })

  it('a tight cluster hides the tags that would overlap', async () => {
    const n = 30
    await page.evaluate(([id, k]) => { (window as any).__crowd.start(id, k, { center: [128, 118], spread: 3, moving: true }) }, [space, n] as const)
    await page.waitForFunction(k => (window as any).peerverse.avatars().length === k && (window as any).peerverse.crowd().tags > 0, n, { timeout: 30_000 })
    for (let i = 0; i < 5; i++) {
      const frames = await page.evaluate(() => (window as any).peerverse.frames() as number)
      await page.waitForFunction(f => (window as any).peerverse.frames() > f + 1, frames, { timeout: 30_000 })
      const tags = await shownTags(page)
      assert.ok(tags.length >= 1 && tags.length <= MAX_TAGS, `${tags.length} tags shown`)
      assert.deepEqual(overlapping(tags), [], 'no two shown tags overlap while the cluster walks')
    }
    const inView = await page.evaluate(() => (window as any).peerverse.avatars().filter((x: { detail: string }) => x.detail !== 'hidden').length as number)
    assert.ok((await shownTags(page)).length < inView, 'some tags are hidden in the cluster')
  })

  it('the count beside the space, the people heading and the list agree as members come and go', async () => {
    for (const n of [25, 7, 0]) {
      if (n === 0) await page.evaluate(() => { (window as any).__crowd.stop() })
      else await page.evaluate(([id, k]) => { (window as any).__crowd.start(id, k) }, [space, n] as const)
      await page.waitForFunction(k => document.querySelectorAll('#people li[data-did]').length === k + 1, n, { timeout: 30_000 })
      await page.waitForFunction(k => (window as any).peerverse.avatars().length === k, n, { timeout: 30_000 })
      const c = await counts(page, space)
      assert.deepEqual(c, { beside: n + 1, heading: `(${n + 1})`, rows: n + 1 }, `with ${n} others`)
    }
    assert.deepEqual(problems, [], 'no uncaught errors on the page')
  })
})
