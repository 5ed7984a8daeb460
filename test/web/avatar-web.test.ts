/**
 * Avatars in the browser client end to end: two real peers (processes on loopback, one chain),
 * one headless Chromium with two pages. A adds a VRM file to the content layer, sets it as the
 * avatar in the profile form and then makes a space (our avatar goes with presence on join); B
 * joins through A's link and draws A as that model, come from the swarm, walking while A walks
 * and idle when A stops; A draws B, who has no avatar, as one of the project's defaults. Then A
 * sets a plain GLB as the avatar (our avatar goes with presence when the profile changes), which B
 * draws as it is, then a text file: B shows its named error and keeps the capsule, and the page goes on drawing frames. With a crowd in
 * front of B, only the nearest are drawn as models (at most MAX_DETAILED_AVATARS, fewer when frames
 * are slow), and the others as impostors of their model.
 */
import { describe, it, before, after, afterEach, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { mkdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { chromium, type Browser, type Page } from 'playwright-core'
import { PeerSet, ROOT, type CliPeer } from '../helpers/cli-peer.ts'
import { CROWD_SEND_HZ, crowdInitScript } from '../helpers/crowd.ts'
import { model } from './models-fixtures.ts'
import { DETAIL_DISTANCE, MAX_DETAILED_AVATARS } from '../../web/src/crowd.ts'
import { MIN_DETAILED_AVATARS } from '../../web/src/governor.ts'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const SHOTS = join(ROOT, 'test/screenshots')
const WAIT = { timeout: 60_000 }
const DEFAULT_NAMES = ['ada', 'bo', 'cy', 'dee']
const set = new PeerSet()

interface Ready { url: string }
const urlOf = (p: CliPeer): string => (p.ready as unknown as Ready).url

interface AvatarView { did: string, model: string, loaded: boolean, impostor: boolean, animation: string, error?: string, detail: string, distance: number }

async function avatarOf (page: Page, did: string): Promise<AvatarView | undefined> {
  return await page.evaluate(d => (window as any).peerverse.avatars().find((x: { did: string }) => x.did === d), did)
}

interface Want { model?: string, loaded?: boolean, animation?: string, failed?: boolean }

/** Waits until the page draws did's avatar as wanted; returns it. */
async function waitAvatar (page: Page, did: string, want: Want): Promise<AvatarView> {
  await page.waitForFunction(([d, w]) => {
    const a = (window as any).peerverse.avatars().find((x: { did: string }) => x.did === d)
    return a != null && (w.model == null || a.model === w.model) && (w.loaded == null || a.loaded === w.loaded) &&
      (w.animation == null || a.animation === w.animation) && (w.failed == null || (a.error != null) === w.failed)
  }, [did, want] as const, WAIT)
  return (await avatarOf(page, did))!
}

async function addContent (peer: CliPeer, name: string, bytes: Uint8Array): Promise<string> {
  const res = await peer.api.raw('POST', `/api/v0/content/add?name=${name}`, { body: new Uint8Array(bytes) })
  assert.equal(res.status, 200)
  return (await res.json() as { cid: string }).cid
}

/** Saves an avatar CID in the page's profile form. */
async function setProfileAvatar (page: Page, cid: string): Promise<void> {
  if (!await page.isVisible('#profile-avatar-input')) await page.click('#my-profile summary')
  await page.fill('#profile-avatar-input', cid)
  await page.click('#profile-save')
  await page.waitForFunction(() => !(document.getElementById('profile-save') as HTMLButtonElement).disabled, null, WAIT)
}

describe('avatars in the browser client, two peers and two pages', { timeout: 420_000, skip: existsSync(CHROMIUM) ? false : `no Chromium at ${CHROMIUM}` }, () => {
  let a: CliPeer, b: CliPeer
  let browser: Browser
  let pa: Page, pb: Page
  let didA = '', didB = ''
  const problems: string[] = []

  before(async () => {
    await mkdir(SHOTS, { recursive: true })
    a = await set.start()
    b = await set.start({ bootstrap: [a.addr], extra: ['--genesis', join(a.dataDir, 'genesis.json')] })
    didA = a.ready.did
    didB = b.ready.did
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--use-angle=swiftshader', '--enable-unsafe-swiftshader']
    })
    const open = async (name: string): Promise<Page> => {
      const ctx = await browser.newContext({ viewport: { width: 1100, height: 750 } })
      // B's page also takes made-up members through its event stream (the crowd test's helper).
      if (name === 'B') await ctx.addInitScript(crowdInitScript, CROWD_SEND_HZ)
      const page = await ctx.newPage()
      page.on('pageerror', err => { problems.push(`${name}: ${err.message}`) })
      return page
    }
    ;[pa, pb] = await Promise.all([open('A'), open('B')])
  })

  afterEach(async c => {
    const t = c as TestContext & { passed?: boolean }
    if (t.passed !== false) return
    for (const [name, page] of [['a', pa], ['b', pb]] as const) {
      await page?.screenshot({ path: join(SHOTS, `avatar-failed-${name}.png`) }).catch(() => {})
      const errors = await page?.evaluate(() => document.getElementById('errors')?.textContent ?? '').catch(() => '')
      if (errors !== '') t.diagnostic(`${name}'s errors: ${errors}`)
    }
  })

  after(async () => {
    await browser?.close()
    await set.cleanup()
  })

  it('B draws A\'s VRM avatar from the swarm, walking while A walks and idle when A stops; A draws B as a default', async () => {
    const vrm = await readFile(join(ROOT, 'web/assets/avatars/bo.vrm'))
    const cid = await addContent(a, 'me.vrm', vrm)
    await pa.goto(urlOf(a))
    await pa.waitForFunction(() => (window as any).peerverse?.did() != null, null, WAIT)
    // The avatar is in the profile before A is in any space: it goes with the join.
    await setProfileAvatar(pa, cid)
    await pa.fill('#create-name', 'Fitting room')
    await pa.click('#create-send')
    await pa.waitForFunction(() => (window as any).peerverse.space() != null && document.getElementById('space-id')!.textContent !== '', null, WAIT)
    const space = await pa.evaluate(() => (window as any).peerverse.space() as string)
    await pa.evaluate(() => { delete document.getElementById('space-id')!.dataset.link })
    await pa.click('#space-copy')
    await pa.waitForFunction(() => document.getElementById('space-id')!.dataset.link != null, null, WAIT)
    const link = await pa.evaluate(() => document.getElementById('space-id')!.dataset.link!)
    await pb.goto(urlOf(b) + new URL(link).hash)
    await pb.waitForFunction(id => (window as any).peerverse?.space() === id, space, WAIT)

    const seen = await waitAvatar(pb, didA, { model: cid, loaded: true })
    assert.equal(seen.error, undefined)
    assert.equal(seen.animation, 'idle', 'A stands still')
    const other = await waitAvatar(pa, didB, { loaded: true })
    assert.ok(DEFAULT_NAMES.includes(other.model), `B, with no avatar, wears a default (${other.model})`)

    // A walks ahead: B sees the walk, then the idle pose once A stops.
    await pa.focus('#scene')
    await pa.keyboard.down('KeyW')
    try {
      await waitAvatar(pb, didA, { animation: 'walk', loaded: true })
    } finally {
      await pa.keyboard.up('KeyW')
    }
    await pb.screenshot({ path: join(SHOTS, 'avatars.png') })
    await waitAvatar(pb, didA, { animation: 'idle', loaded: true })
    const stats = await pb.evaluate(() => (window as any).peerverse.crowd())
    assert.ok(stats.models >= 1, `a model drawn (${JSON.stringify(stats)})`)
  })

  it('a plain glTF avatar is drawn as it is; an avatar CID that is not a model shows its named error, the capsule stays and frames go on', async () => {
    // Changed in the profile while in the space: each new look reaches B.
    const plain = await addContent(a, 'plain.glb', await model({ vertices: 8 }))
    await setProfileAvatar(pa, plain)
    const drawn = await waitAvatar(pb, didA, { model: plain, loaded: true })
    assert.equal(drawn.error, undefined)
    assert.ok(['idle', 'walk'].includes(drawn.animation), `a plain glTF animates too (${drawn.animation})`)
    const text = await addContent(a, 'notes.txt', new TextEncoder().encode('these are notes, not a model\n'.repeat(20)))
    await setProfileAvatar(pa, text)
    const seen = await waitAvatar(pb, didA, { model: text, failed: true })
    assert.match(seen.error!, /^[A-Za-z]+Error: /, 'a named failure')
    assert.equal(seen.loaded, false)
    assert.equal(seen.animation, 'none')
    const title = await pb.evaluate(d => document.querySelector<HTMLElement>(`#labels .tag[data-did="${d}"]`)?.title, didA)
    assert.equal(title, seen.error, 'the tag tells why')
    const stats = await pb.evaluate(() => (window as any).peerverse.crowd())
    assert.ok(stats.near + stats.far > stats.models, `the capsule is drawn (${JSON.stringify(stats)})`)
    const frames = await pb.evaluate(() => (window as any).peerverse.frames() as number)
    await pb.waitForFunction(f => (window as any).peerverse.frames() > f + 10, frames, WAIT)
  })

  it(`at most MAX_DETAILED_AVATARS (${MAX_DETAILED_AVATARS}) members are models, as many as the frame time allows, the nearest; the rest are impostors`, async () => {
    const space = await pb.evaluate(() => (window as any).peerverse.space() as string)
    const n = MAX_DETAILED_AVATARS + 8
    await pb.evaluate(([id, k]) => { (window as any).__crowd.start(id, k, { center: [128, 112], spread: 6, moving: false }) }, [space, n] as const)
    // Settled: the governor's number of models drawn, and every other member in view an impostor.
    await pb.waitForFunction(k => {
      const p = (window as any).peerverse
      const s = p.crowd()
      const list = p.avatars().filter((x: { did: string, detail: string }) => x.did.includes('Crowd') && x.detail !== 'hidden')
      return list.length === k && s.models === s.detailLimit && s.models + s.impostors >= k
    }, n, WAIT)
    // Read in one go (one frame's state): the list and the stats.
    const { list, stats } = await pb.evaluate(() => ({ list: (window as any).peerverse.avatars() as AvatarView[], stats: (window as any).peerverse.crowd() }))
    assert.ok(stats.detailLimit >= MIN_DETAILED_AVATARS && stats.detailLimit <= MAX_DETAILED_AVATARS, JSON.stringify(stats))
    const inRange = list.filter(x => x.did.includes('Crowd') && x.detail === 'near' && x.error == null && x.distance <= DETAIL_DISTANCE)
    assert.ok(inRange.length > MAX_DETAILED_AVATARS, `${inRange.length} members in detail range`)
    const models = inRange.filter(x => x.loaded)
    assert.ok(models.length >= MIN_DETAILED_AVATARS && models.length <= stats.detailLimit, `${models.length} models, limit ${stats.detailLimit}`)
    const furthestModel = Math.max(...models.map(x => x.distance))
    for (const x of inRange.filter(x => !x.loaded)) {
      assert.ok(x.distance >= furthestModel, `${x.did} at ${x.distance} m is not a model while a model at ${furthestModel} m is drawn`)
      assert.equal(x.animation, 'none')
      assert.equal(x.impostor, true, `${x.did} is drawn as a picture of its model`)
    }
    for (const x of models) assert.ok(DEFAULT_NAMES.includes(x.model) && x.animation === 'idle' && !x.impostor, `${x.did}: ${x.model} ${x.animation}`)
    await pb.evaluate(() => { (window as any).__crowd.stop() })
    await pb.waitForFunction(() => (window as any).peerverse.crowd().models === 0, null, WAIT)
    assert.deepEqual(problems, [], 'no uncaught errors on either page')
  })
})
