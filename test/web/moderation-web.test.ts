/**
 * Moderation in the browser, end to end: three real peers (processes on loopback, one chain) and
 * three headless Chromium pages. C blocks B from the people list: B's chat and avatar leave C's
 * page (and stay away after a reload, and for what B says next) while A still sees both. A, owner
 * of a new private space, adds C's did in the owner's section (a bad did is refused by name first);
 * C opens the space's link, gets in and reads its chat; the owner makes C an editor from C's row,
 * and removes C. Before the block, C opens B's card with a click on B's avatar and mutes B.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { chromium, type Browser, type Page } from 'playwright-core'
import { PeerSet, type CliPeer } from '../helpers/cli-peer.ts'
import { cappedPage } from '../helpers/frame-rate.ts'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
/** Waits poll every 100 ms: polling on animation frames would follow the pages' capped frame rate. */
const WAIT = { timeout: 60_000, polling: 100 }
const set = new PeerSet()

interface Ready { url: string }
const urlOf = (p: CliPeer): string => (p.ready as unknown as Ready).url

/** Whether the page draws an avatar for did. */
async function draws (page: Page, did: string): Promise<boolean> {
  return await page.evaluate(d => (window as any).peerverse.avatars().some((x: { did: string }) => x.did === d), did)
}

/** The chat lines of an author the page shows (hidden lines left out). */
async function chatOf (page: Page, did: string): Promise<string[]> {
  return await page.evaluate(d => [...document.querySelectorAll<HTMLElement>('#chat-log li')]
    .filter(li => li.dataset.author === d && !li.hidden).map(li => li.querySelector('.text')?.textContent ?? ''), did)
}

/** The link to the space shown that the page's `link` button makes (the space and its holders' addresses). */
async function linkOf (page: Page): Promise<string> {
  const id = await page.evaluate(() => (window as any).peerverse.space())
  await page.evaluate(() => { delete document.getElementById('space-id')!.dataset.link })
  await page.click('#space-copy')
  await page.waitForFunction(() => document.getElementById('space-id')!.dataset.link != null, null, WAIT)
  const link = await page.evaluate(() => document.getElementById('space-id')!.dataset.link!)
  assert.ok(link.includes(id), 'the link names the space shown')
  return link
}

async function say (page: Page, text: string): Promise<void> {
  await page.fill('#chat-input', text)
  await page.click('#chat-send')
  await page.waitForFunction(t => [...document.querySelectorAll('#chat-log li.mine .text')].some(s => s.textContent === t), text, WAIT)
}

async function sees (page: Page, text: string): Promise<void> {
  await page.waitForFunction(t => [...document.querySelectorAll<HTMLElement>('#chat-log li')].some(li => !li.hidden && li.querySelector('.text')?.textContent === t), text, WAIT)
}

describe('moderation in the browser, three peers and three pages', { timeout: 480_000, skip: existsSync(CHROMIUM) ? false : `no Chromium at ${CHROMIUM}` }, () => {
  let a: CliPeer, b: CliPeer, c: CliPeer
  let browser: Browser
  let pa: Page, pb: Page, pc: Page
  let didA = '', didB = '', didC = ''
  const problems: string[] = []

  before(async () => {
    a = await set.start()
    const genesis = ['--genesis', join(a.dataDir, 'genesis.json')]
    ;[b, c] = await Promise.all([set.start({ bootstrap: [a.addr], extra: genesis }), set.start({ bootstrap: [a.addr], extra: genesis })])
    didA = a.ready.did
    didB = b.ready.did
    didC = c.ready.did
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--use-angle=swiftshader', '--enable-unsafe-swiftshader']
    })
    const open = async (name: string): Promise<Page> => {
      const page = await cappedPage(browser, { viewport: { width: 1280, height: 800 } })
      page.on('pageerror', err => { problems.push(`${name}: ${err.message}`) })
      return page
    }
    ;[pa, pb, pc] = await Promise.all([open('A'), open('B'), open('C')])
  })

  after(async () => {
    await browser?.close()
    await set.cleanup()
  })

  it('C blocks B: B\'s chat and avatar leave C\'s page and stay on A\'s', async () => {
    await pa.goto(urlOf(a))
    await pa.waitForFunction(() => (window as any).peerverse?.did() != null, null, WAIT)
    await pa.fill('#join-name', 'ada')
    await pa.fill('#create-name', 'Plaza')
    await pa.click('#create-send')
    await pa.waitForFunction(() => (window as any).peerverse.space() != null && document.getElementById('space-id')!.textContent !== '', null, WAIT)
    const space = (await pa.textContent('#space-id'))!.trim()
    // The owner's section shows on the owner's page only.
    assert.equal(await pa.isVisible('#mod-owner'), true)
    // B and C open the link A's page makes: it names A's peer, asked first.
    const hash = new URL(await linkOf(pa)).hash
    await Promise.all([pb.goto(urlOf(b) + hash), pc.goto(urlOf(c) + hash)])
    for (const page of [pb, pc]) await page.waitForFunction(id => (window as any).peerverse?.space() === id, space, WAIT)
    for (const [page, others] of [[pa, [didB, didC]], [pb, [didA, didC]], [pc, [didA, didB]]] as const) {
      for (const d of others) await page.waitForFunction(x => (window as any).peerverse.avatars().some((m: { did: string }) => m.did === x), d, WAIT)
    }
    assert.equal(await pc.isVisible('#mod-owner'), false, 'no owner controls for a member')
    assert.equal(await pc.locator(`#people select[data-owner="${didB}"]`).count(), 0)

    await say(pb, 'hello from bob')
    await sees(pc, 'hello from bob')
    await sees(pa, 'hello from bob')

    // B steps 3 m ahead (everyone starts on one spot, facing one way); C clicks B's avatar and
    // mutes B from the card it opens.
    const start = await pb.evaluate(() => (window as any).peerverse.me().position as number[])
    await pb.focus('#scene')
    await pb.keyboard.down('KeyW')
    await pb.waitForFunction(p => { const q = (window as any).peerverse.me().position; return Math.hypot(q[0] - p[0], q[2] - p[2]) > 3 }, start, WAIT)
    await pb.keyboard.up('KeyW')
    const end = await pb.evaluate(() => (window as any).peerverse.me().position as number[])
    await pc.waitForFunction(([d, p]) => {
      const av = (window as any).peerverse.avatars().find((x: { did: string }) => x.did === d)
      return av != null && Math.hypot(av.position[0] - p[0], av.position[2] - p[2]) < 0.05
    }, [didB, end] as const, WAIT)
    const point = await pc.evaluate(d => (window as any).peerverse.avatarScreen(d), didB)
    assert.ok(point != null, 'B stands in C\'s view')
    await pc.click('#scene', { position: point })
    await pc.waitForFunction(d => (window as any).peerverse.moderation().card === d, didB, WAIT)
    await pc.click(`#person-card button[data-mute="${didB}"]`)
    await pc.waitForFunction(d => (window as any).peerverse.moderation().muted.includes(d), didB, WAIT)
    assert.equal(await draws(pc, didB), true, 'a mute leaves B in sight')

    await pc.click(`#people button[data-block="${didB}"]`)
    await pc.waitForFunction(d => (window as any).peerverse.moderation().blocked.includes(d), didB, WAIT)
    await pc.waitForFunction(d => !(window as any).peerverse.avatars().some((m: { did: string }) => m.did === d) && document.querySelector(`#people li[data-did="${d}"]`) == null, didB, WAIT)
    assert.deepEqual(await chatOf(pc, didB), [], 'B\'s chat is hidden for C')
    assert.equal(await pc.evaluate(() => (window as any).peerverse.moderation().card), null, 'the card of someone blocked closes')
    assert.equal(await pc.locator(`#mod-personal button[data-unblock="${didB}"]`).count(), 1, 'C can undo the block')

    // What B says next reaches A and not C: A's later line reaches C, so B's had time to.
    await say(pb, 'second from bob')
    await sees(pa, 'second from bob')
    await say(pa, 'after bob')
    await sees(pc, 'after bob')
    assert.deepEqual(await chatOf(pc, didB), [])
    assert.equal(await draws(pc, didB), false, 'B\'s avatar stays away for C')
    // A's page is untouched: B's avatar and both lines.
    assert.equal(await draws(pa, didB), true)
    assert.deepEqual(await chatOf(pa, didB), ['hello from bob', 'second from bob'])
    assert.deepEqual(await pa.evaluate(() => (window as any).peerverse.moderation().blocked), [])

    // A reload of C's page asks C's peer again: still no B.
    await pc.reload()
    await pc.waitForFunction(id => (window as any).peerverse?.space() === id && document.querySelector('#chat-log li') != null, space, WAIT)
    await sees(pc, 'after bob')
    assert.deepEqual(await chatOf(pc, didB), [])
    assert.equal(await draws(pc, didB), false)
    assert.deepEqual(await pc.evaluate(() => (window as any).peerverse.moderation().blocked), [didB])
  })

  it('the owner adds C to a private space from the browser, and C gets in', async () => {
    const plaza = await pa.evaluate(() => (window as any).peerverse.space())
    await pa.check('#create-private')
    await pa.fill('#create-name', 'Back room')
    await pa.click('#create-send')
    await pa.waitForFunction(p => { const s = (window as any).peerverse.space(); return s != null && s !== p && document.getElementById('space-id')!.textContent === s }, plaza, WAIT)
    const priv = (await pa.textContent('#space-id'))!.trim()
    await pa.waitForFunction(() => (window as any).peerverse.moderation().owner === true, null, WAIT)
    assert.deepEqual(await pa.evaluate(() => (window as any).peerverse.moderation().policy.members), [didA])
    await say(pa, 'welcome to the back room')

    // Bad input is refused by name, and nothing changes.
    await pa.fill('#mod-did', 'did:key:nonsense')
    await pa.selectOption('#mod-action', 'member')
    await pa.click('#mod-apply')
    await pa.waitForSelector('#errors [data-code="InvalidSpaceRequestError"]', WAIT)
    assert.deepEqual(await pa.evaluate(() => (window as any).peerverse.moderation().policy.members), [didA])

    await pa.fill('#mod-did', didC)
    await pa.click('#mod-apply')
    await pa.waitForFunction(d => (window as any).peerverse.moderation().policy.members.includes(d), didC, WAIT)
    await pa.waitForSelector(`#mod-owner-lists [data-list="member"] li[data-did="${didC}"] button[data-remove-member="${didC}"]`, WAIT)

    // C opens the link A's page makes (it names A's peer) and gets in: it reads the space's chat.
    await pc.fill('#join-id', await linkOf(pa))
    await pc.click('#join-send')
    await pc.waitForFunction(id => (window as any).peerverse.space() === id, priv, WAIT)
    await sees(pc, 'welcome to the back room')
    await say(pc, 'glad to be in')
    await sees(pa, 'glad to be in')
    await pa.waitForFunction(d => (window as any).peerverse.avatars().some((m: { did: string }) => m.did === d), didC, WAIT)
    assert.equal(await pc.isVisible('#mod-owner'), false)

    // The owner's menu on C's row: C becomes an editor, and C's page learns it from the policy.
    await pa.waitForSelector(`#people select[data-owner="${didC}"]`, WAIT)
    await pa.selectOption(`#people select[data-owner="${didC}"]`, 'add:editor')
    await pc.waitForFunction(d => (window as any).peerverse.moderation().policy?.editors.includes(d), didC, WAIT)
    // The owner removes C from the space: the member list is the owner again.
    await pa.click(`#mod-owner-lists button[data-remove-member="${didC}"]`)
    await pa.waitForFunction(d => !(window as any).peerverse.moderation().policy.members.includes(d), didC, WAIT)
    assert.deepEqual(problems, [], 'no uncaught errors on any page')
  })
})
