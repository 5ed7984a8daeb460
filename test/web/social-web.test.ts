/**
 * The timeline in the browser client end to end: two real peers (processes on loopback, one
 * chain), two headless Chromium pages. A sets a profile and posts with an image added through the
 * page; B opens A's profile from the people list, follows A and sees the post with its image (come
 * from the swarm); B replies and likes; A, who does not follow B, sees the reply threaded under the
 * post and the like counted (B's peer hands them to A's inbox), with a count of new replies; after
 * following B back from the people list A still sees the reply once. A post over the feed's limit and an image CID that
 * is not an image get visible named errors, and the page goes on working; B unfollows A.
 */
import { describe, it, before, after, afterEach, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { chromium, type Browser, type Page } from 'playwright-core'
import { PeerSet, ROOT, type CliPeer } from '../helpers/cli-peer.ts'
import { MAX_POST_TEXT_BYTES, MAX_PROFILE_BIO_BYTES, MAX_PROFILE_NAME_BYTES } from '../../web/src/panels/social-limits.ts'
import { MAX_BIO_BYTES, MAX_NAME_BYTES, MAX_TEXT_BYTES } from '../../src/social/feed.ts'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const SHOTS = join(ROOT, 'test/screenshots')
const WAIT_MS = 60_000
/** A 1 x 1 PNG. */
const DOT_PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==', 'base64')
const set = new PeerSet()

interface PostView { id: string, author: string, name?: string, text: string, image?: string, likes: number, replies: Array<{ id: string, author: string, text: string, likes: number }> }
const postsOf = async (page: Page): Promise<PostView[]> => (await page.evaluate(() => (window as any).peerverse.timeline())).posts

describe('the timeline in the browser client, two peers and two pages', { timeout: 300_000, skip: existsSync(CHROMIUM) ? false : `no Chromium at ${CHROMIUM}` }, () => {
  let a: CliPeer, b: CliPeer
  let browser: Browser
  let pa: Page, pb: Page
  let didA = '', didB = ''
  let postId = ''
  const problems: string[] = []

  before(async () => {
    await mkdir(SHOTS, { recursive: true })
    a = await set.start()
    b = await set.start({ bootstrap: [a.addr], extra: ['--genesis', join(a.dataDir, 'genesis.json')] })
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run']
    })
    pa = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage()
    pb = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage()
    for (const [name, page] of [['A', pa], ['B', pb]] as const) page.on('pageerror', err => { problems.push(`${name}: ${err.message}`) })
    didA = a.ready.did
    didB = b.ready.did
  })

  // A failed step leaves both pages' screenshots and errors for whoever reads the failure.
  afterEach(async c => {
    const t = c as TestContext & { passed?: boolean }
    if (t.passed !== false) return
    for (const [name, page] of [['a', pa], ['b', pb]] as const) {
      await page?.screenshot({ path: join(SHOTS, `social-failed-${name}.png`), fullPage: true }).catch(() => {})
      const errors = await page?.evaluate(() => document.getElementById('errors')?.textContent ?? '').catch(() => '')
      if (errors !== '') t.diagnostic(`${name}'s errors: ${errors}`)
    }
  })

  after(async () => {
    await browser?.close()
    await set.cleanup()
  })

  it('the page\'s limits are the feed\'s', () => {
    assert.equal(MAX_POST_TEXT_BYTES, MAX_TEXT_BYTES)
    assert.equal(MAX_PROFILE_NAME_BYTES, MAX_NAME_BYTES)
    assert.equal(MAX_PROFILE_BIO_BYTES, MAX_BIO_BYTES)
  })

  it('A sets a profile and posts with an image; B follows A from the people list and sees the post', async () => {
    await pa.goto((a.ready as unknown as { url: string }).url)
    await pa.waitForFunction(() => (window as any).peerverse?.did() != null, null, { timeout: WAIT_MS })
    await pa.click('#my-profile summary')
    await pa.fill('#profile-name-input', 'ada')
    await pa.fill('#profile-bio-input', 'builds bridges')
    await pa.click('#profile-save')
    await pa.waitForFunction(() => document.getElementById('profile-name')?.textContent === 'ada', null, { timeout: WAIT_MS })

    await pa.setInputFiles('#post-file', { name: 'dot.png', mimeType: 'image/png', buffer: DOT_PNG })
    await pa.waitForFunction(() => document.querySelector<HTMLInputElement>('#post-image')!.value !== '', null, { timeout: WAIT_MS })
    const image = await pa.inputValue('#post-image')
    await pa.fill('#post-text', 'hello from ada')
    await pa.click('#post-send')
    await pa.waitForFunction(() => (window as any).peerverse.timeline().posts.some((p: PostView) => p.text === 'hello from ada'), null, { timeout: WAIT_MS })
    const mine = (await postsOf(pa)).find(p => p.text === 'hello from ada')!
    assert.equal(mine.author, didA)
    assert.equal(mine.image, image)
    postId = mine.id

    // They meet in a space: B opens A's profile from the people list.
    await pa.fill('#join-name', 'ada')
    await pa.fill('#create-name', 'Square')
    await pa.click('#create-send')
    await pa.waitForFunction(() => (window as any).peerverse.space() != null && document.getElementById('space-id')!.textContent !== '', null, { timeout: WAIT_MS })
    const space = (await pa.textContent('#space-id'))!.trim()
    await pb.goto(`${(b.ready as unknown as { url: string }).url}#space=${space}`)
    await pb.waitForFunction(id => (window as any).peerverse?.space() === id, space, { timeout: WAIT_MS })
    // A's feed (and so A's profile) comes to B by following: the profile says so, then fills in.
    await pb.click(`#people li[data-did="${didA}"] button[data-profile]`, { timeout: WAIT_MS })
    await pb.waitForSelector(`#profile-view[data-did="${didA}"] #profile-follow[data-following="no"]`, { timeout: WAIT_MS })
    await pb.click('#profile-follow')
    await pb.waitForSelector('#profile-follow[data-following="yes"]', { timeout: WAIT_MS })
    await pb.waitForFunction(() => document.getElementById('profile-name')?.textContent === 'ada', null, { timeout: WAIT_MS })
    assert.equal(await pb.textContent('#profile-bio'), 'builds bridges')

    await pb.waitForFunction(id => (window as any).peerverse.timeline().posts.some((p: PostView) => p.id === id), postId, { timeout: WAIT_MS })
    const seen = (await postsOf(pb)).find(p => p.id === postId)!
    assert.equal(seen.author, didA)
    assert.equal(seen.name, 'ada')
    assert.equal(seen.text, 'hello from ada')
    // The image is drawn at B, its bytes fetched from the swarm.
    await pb.waitForSelector(`#timeline li[data-id="${postId}"] img[data-state="loaded"]`, { timeout: WAIT_MS })
  })

  it('B replies and likes; A sees them without following B, then follows B back from the people list', async () => {
    const row = `#timeline li.post[data-id="${postId}"]`
    await pb.fill(`${row} .reply-text`, 'lovely, ada')
    await pb.click(`${row} [data-testid="reply-send"]`)
    await pb.click(`${row} .meta button[data-like="${postId}"]`)
    await pb.waitForFunction(id => {
      const p = (window as any).peerverse.timeline().posts.find((x: PostView) => x.id === id)
      return p != null && p.likes === 1 && p.replies.some((r: { text: string }) => r.text === 'lovely, ada')
    }, postId, { timeout: WAIT_MS })
    // A does not follow B, yet B's reply and like reach A: B's peer sent them to A's inbox.
    const following = await a.api.request<{ following: string[] }>('GET', '/api/v0/social/following')
    assert.ok(!following.following.includes(didB), 'A does not follow B')
    await pa.waitForFunction(id => {
      const p = (window as any).peerverse.timeline().posts.find((x: PostView) => x.id === id)
      return p != null && p.likes === 1 && p.replies.some((r: { text: string }) => r.text === 'lovely, ada')
    }, postId, { timeout: WAIT_MS })
    assert.equal(await pa.evaluate(() => (window as any).peerverse.timeline().newReplies), 1)
    assert.equal(await pa.textContent('#new-replies'), '1 new reply to your posts')
    await pa.click('#new-replies')
    assert.equal(await pa.evaluate(() => (window as any).peerverse.timeline().newReplies), 0)
    // Following B back: the reply, now also from B's feed, still shows once.
    await pa.click(`#people li[data-did="${didB}"] button[data-profile]`, { timeout: WAIT_MS })
    await pa.waitForSelector(`#profile-view[data-did="${didB}"] #profile-follow[data-following="no"]`, { timeout: WAIT_MS })
    await pa.click('#profile-follow')
    await pa.waitForSelector('#profile-follow[data-following="yes"]', { timeout: WAIT_MS })
    await pa.waitForFunction(id => {
      const p = (window as any).peerverse.timeline().posts.find((x: PostView) => x.id === id)
      return p != null && p.likes === 1 && p.replies.some((r: { text: string }) => r.text === 'lovely, ada')
    }, postId, { timeout: WAIT_MS })
    const post = (await postsOf(pa)).find(p => p.id === postId)!
    assert.equal(post.replies.length, 1)
    assert.equal(post.replies[0].author, didB)
    // The reply is threaded under the post, not a post of its own.
    assert.ok(!(await postsOf(pa)).some(p => p.text === 'lovely, ada'))
    assert.equal(await pa.locator(`#timeline li.post[data-id="${postId}"] .replies li.reply`).count(), 1)
    await pa.locator('#sec-social').screenshot({ path: join(SHOTS, 'timeline.png') })
  })

  it('a post over the limit and an image CID that is not an image get named errors; the page goes on', async () => {
    await pa.fill('#post-text', 'x'.repeat(MAX_POST_TEXT_BYTES + 1))
    await pa.click('#post-send')
    await pa.waitForSelector('#errors [data-code="PostTooLongError"]', { timeout: WAIT_MS })

    const added = await a.api.raw('POST', '/api/v0/content/add?name=notes.txt', { body: new TextEncoder().encode('not a picture at all') })
    assert.equal(added.status, 200)
    const { cid } = await added.json() as { cid: string }
    await pa.fill('#post-text', 'look at this')
    await pa.fill('#post-image', cid)
    await pa.click('#post-send')
    await pa.waitForSelector('#errors [data-code="NotAnImageError"]', { timeout: WAIT_MS })
    assert.ok(!(await postsOf(pa)).some(p => p.text === 'look at this'), 'nothing was posted')

    // The page still works: a plain post goes out and B sees it.
    await pa.fill('#post-image', '')
    await pa.fill('#post-text', 'still here')
    await pa.click('#post-send')
    await pb.waitForFunction(() => (window as any).peerverse.timeline().posts.some((p: PostView) => p.text === 'still here'), null, { timeout: WAIT_MS })

    // B unfollows A from the list of whom B follows: A's posts leave B's timeline.
    await pb.click('#follows summary')
    await pb.click(`#following button[data-unfollow="${didA}"]`)
    await pb.waitForFunction(d => !(window as any).peerverse.timeline().posts.some((p: PostView) => p.author === d), didA, { timeout: WAIT_MS })
    assert.deepEqual(problems, [], 'no uncaught errors on either page')
  })
})
