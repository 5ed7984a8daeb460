/**
 * Sharing in the browser client end to end: three real peers (processes on loopback, one chain),
 * headless Chromium with a fake camera (`--use-fake-device-for-media-stream`: a moving test
 * pattern), so sharing the camera needs no screen picker. A shares its camera from #share-toggle;
 * B, standing by A's board, sees it in `peerverse.boards()` with frames decoded and drawn, more
 * and more, at the camera's size (and A its own board); C, who walked beyond hearing range first, draws no frame of it.
 * When A presses again the board goes away at B.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { chromium, type Browser, type Page } from 'playwright-core'
import { PeerSet, ROOT, type CliPeer } from '../helpers/cli-peer.ts'
import { cappedPage } from '../helpers/frame-rate.ts'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const SHOTS = join(ROOT, 'test/screenshots')
/** Beyond the peer's HEARING_RANGE_M (30 m) from the board, and beyond presence's near radius. */
const WALK_AWAY_M = 45
const WAIT_MS = 60_000

type Name = 'A' | 'B' | 'C'
interface Member { name: Name, peer: CliPeer, page: Page, did: string }
interface BoardView { did: string, position: number[], frames: number, width: number, height: number }

const set = new PeerSet()
const COMMON = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run']

const boardsAt = async (page: Page): Promise<BoardView[]> => await page.evaluate(() => (window as any).peerverse.boards())

describe('sharing in the browser client, on real peers', { timeout: 600_000, skip: existsSync(CHROMIUM) ? false : `no Chromium at ${CHROMIUM}` }, () => {
  const members = new Map<Name, Member>()
  const browsers: Browser[] = []
  const problems: string[] = []
  let space = ''
  // A (the camera) and C share a browser with no WebGL (the view's scene is kept, not drawn); B
  // draws the view in software, so its board is a real texture in a drawn scene.
  let plain: Browser
  let drawn: Browser

  async function open (name: Name, browser: Browser): Promise<Member> {
    const first = members.get('A')
    const peer = first == null
      ? await set.start()
      : await set.start({ bootstrap: [first.peer.addr], extra: ['--genesis', join(first.peer.dataDir, 'genesis.json')] })
    const page = await cappedPage(browser, { viewport: { width: 640, height: 400 } })
    page.on('pageerror', err => { problems.push(`${name}: ${err.message}`) })
    const url = (peer.ready as unknown as { url: string }).url
    const member: Member = { name, peer, page, did: peer.ready.did }
    members.set(name, member)
    if (first == null) {
      await page.goto(url)
      await page.waitForFunction(() => (window as any).peerverse?.did() != null, null, { timeout: WAIT_MS })
      await page.fill('#join-name', name)
      await page.fill('#create-name', 'Meeting room')
      await page.click('#create-send')
      await page.waitForFunction(() => (window as any).peerverse.space() != null && document.getElementById('space-id')!.textContent !== '', null, { timeout: WAIT_MS })
      space = (await page.textContent('#space-id'))!.trim()
    } else {
      await page.goto(`${url}#space=${space}`)
      await page.waitForFunction(id => (window as any).peerverse?.space() === id, space, { timeout: WAIT_MS })
    }
    for (const other of members.values()) {
      if (other === member) continue
      await page.waitForFunction(d => (window as any).peerverse.avatars().some((x: { did: string }) => x.did === d), other.did, { timeout: WAIT_MS })
      await other.page.waitForFunction(d => (window as any).peerverse.avatars().some((x: { did: string }) => x.did === d), member.did, { timeout: WAIT_MS })
    }
    return member
  }

  before(async () => {
    await mkdir(SHOTS, { recursive: true })
    plain = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: [...COMMON, '--disable-webgl', '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream'] })
    browsers.push(plain)
    drawn = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: [...COMMON, '--use-gl=swiftshader', '--enable-unsafe-swiftshader'] })
    browsers.push(drawn)
  })

  after(async () => {
    for (const b of browsers) await b.close().catch(() => {})
    await set.cleanup()
  })

  it('A shares its camera: B by the board draws its frames; C beyond range draws none; pressing again takes the board down', async () => {
    const a = await open('A', plain)
    const b = await open('B', drawn)
    const c = await open('C', plain)
    // C walks beyond range of where A's board will stand.
    const start = await c.page.evaluate(() => (window as any).peerverse.me().position as number[])
    await c.page.focus('#scene')
    await c.page.keyboard.down('ShiftLeft')
    await c.page.keyboard.down('KeyW')
    await c.page.waitForFunction(([p, d]) => { const q = (window as any).peerverse.me().position; return Math.hypot(q[0] - p[0], q[2] - p[2]) > d }, [start, WALK_AWAY_M] as const, { timeout: WAIT_MS })
    await c.page.keyboard.up('KeyW')
    await c.page.keyboard.up('ShiftLeft')

    await a.page.selectOption('#share-source', 'camera')
    await a.page.click('#share-toggle')
    await a.page.waitForFunction(() => document.getElementById('share-toggle')?.dataset.state === 'on', null, { timeout: WAIT_MS })

    const hasFrames = async (page: Page, did: string, min: number): Promise<void> => {
      await page.waitForFunction(([d, n]) => (window as any).peerverse.boards().some((x: BoardView) => x.did === d && x.frames >= n), [did, min] as const, { timeout: WAIT_MS, polling: 100 })
        .catch(async (err: Error) => { throw new Error(`${err.message.split('\n')[0]}; boards ${JSON.stringify(await boardsAt(page))}`) })
    }
    await hasFrames(b.page, a.did, 5)
    await hasFrames(a.page, a.did, 5) // A sees its own board too
    const first = (await boardsAt(b.page)).find(x => x.did === a.did) as BoardView
    await hasFrames(b.page, a.did, first.frames + 20)
    const later = (await boardsAt(b.page)).find(x => x.did === a.did) as BoardView
    assert.ok(later.width > 0 && later.height > 0 && later.width <= 640 && later.height <= 360, `a frame size within 640x360: ${later.width}x${later.height}`)
    const aAt = await a.page.evaluate(() => (window as any).peerverse.me().position as number[])
    assert.ok(Math.hypot(later.position[0] - aAt[0], later.position[2] - aAt[2]) < 5, 'the board stands in front of A')
    await b.page.screenshot({ path: join(SHOTS, 'share-b-sees-a.png') })

    // C, far off: whether or not it knows of the board, it draws no frame of it.
    assert.ok((await boardsAt(c.page)).every(x => x.frames === 0), `C drew frames: ${JSON.stringify(await boardsAt(c.page))}`)

    await a.page.click('#share-toggle')
    await a.page.waitForFunction(() => document.getElementById('share-toggle')?.dataset.state === 'off', null, { timeout: WAIT_MS })
    await b.page.waitForFunction(d => !(window as any).peerverse.boards().some((x: BoardView) => x.did === d), a.did, { timeout: WAIT_MS, polling: 100 })
    assert.ok((await boardsAt(c.page)).every(x => x.frames === 0), 'C drew no frame of the board while it was up')
    assert.deepEqual(problems, [], 'no uncaught errors on any page')
  })
})
