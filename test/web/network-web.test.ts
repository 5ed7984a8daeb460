/**
 * The browser client's side of the network, end to end: two real peers (processes on loopback,
 * each on a chain of its own at first, B told about no one), two headless Chromium pages. A space
 * link made by A's peer, opened on B's page, joins A's space through the peer it carries; the
 * invite A's page shows, accepted on B's page, makes B follow A's chain (B's network panel shows
 * it); the space A lists from its page shows in B's Explore panel with its members present; a
 * content link with A's peer fetches and offers the file on B's page. Also
 * the client's reading of links (pure, no browser) and the named errors it shows for bad ones.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { chromium, type Browser, type Page } from 'playwright-core'
import { PeerSet, ROOT, type CliPeer } from '../helpers/cli-peer.ts'
import { cappedPage } from '../helpers/frame-rate.ts'
import { hashLink, readPasted } from '../../web/src/links.ts'
import { InvalidLinkError } from '../../src/net/links.ts'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const SHOTS = join(ROOT, 'test/screenshots')
const PEER = '/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA'

interface Ready { url: string }
interface NetworkStatus { network?: { genesis: string, chain: string, devnet: boolean, peersOnChain: number, peersOnOtherChains: number } }

describe('the client reads links in the one shared format', () => {
  it('reads the address bar\'s fragment: a link, a malformed link (named error), or no link', () => {
    const l = hashLink(`#space=abc123&peer=${encodeURIComponent(PEER)}`)
    assert.ok(!(l instanceof Error) && l != null)
    assert.deepEqual(l, { kind: 'space', target: 'abc123', peers: [PEER] })
    const bad = hashLink('#join=notacid')
    assert.ok(bad instanceof InvalidLinkError)
    assert.equal(bad.name, 'InvalidLinkError')
    assert.equal(hashLink('#'), undefined)
    assert.equal(hashLink('#section-2'), undefined)
  })

  it('reads what a person pastes: a bare space id, a code, a client URL; refuses the rest by name', () => {
    assert.deepEqual(readPasted('  abc123 '), { kind: 'space', target: 'abc123', peers: [] })
    assert.equal(readPasted(`http://127.0.0.1:7400/#space=abc123&peer=${encodeURIComponent(PEER)}`).peers[0], PEER)
    assert.equal(readPasted(`pv:space=abc123&peer=${encodeURIComponent(PEER)}`).kind, 'space')
    assert.throws(() => readPasted('not a link at all'), { name: 'InvalidLinkError' })
    assert.throws(() => readPasted('pv:space=abc&peer=/ip4/127.0.0.1/tcp/1'), { name: 'InvalidLinkError' })
  })
})

describe('the browser client and the network: invites, links, Explore', { timeout: 400_000, skip: existsSync(CHROMIUM) ? false : `no Chromium at ${CHROMIUM}` }, () => {
  const set = new PeerSet()
  let a: CliPeer, b: CliPeer
  let browser: Browser
  let pa: Page, pb: Page
  let space = ''
  let genesisB = ''
  const problems: string[] = []

  before(async () => {
    await mkdir(SHOTS, { recursive: true })
    // Neither knows the other: B learns of A only from the links A's page gives.
    ;[a, b] = await Promise.all([set.start(), set.start()])
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--use-angle=swiftshader', '--enable-unsafe-swiftshader']
    })
    pa = await cappedPage(browser, { viewport: { width: 1280, height: 900 } })
    pb = await cappedPage(browser, { viewport: { width: 1280, height: 900 } })
    for (const [name, page] of [['A', pa], ['B', pb]] as const) {
      page.on('pageerror', err => { problems.push(`${name}: ${err.message}`) })
    }
    for (const [peer, page] of [[a, pa], [b, pb]] as const) {
      await page.goto((peer.ready as unknown as Ready).url)
      await page.waitForFunction(() => (window as any).peerverse?.did() != null, null, { timeout: 60_000 })
    }
  })

  after(async () => {
    await browser?.close()
    await set.cleanup()
  })

  it('each page\'s network panel shows its own chain, a devnet, and the DHT', async () => {
    for (const [peer, page] of [[a, pa], [b, pb]] as const) {
      const s = await peer.api.request<NetworkStatus>('GET', '/api/v0/status')
      assert.ok(s.network != null, 'the peer reports its network')
      await page.waitForFunction(c => document.getElementById('net-chain')!.dataset.chain === c, s.network.chain, { timeout: 30_000 })
      assert.equal(await page.isVisible('#net-devnet'), s.network.devnet)
      assert.match((await page.textContent('#net-dht'))!, /WAN \w+ \(\d+ in table\) · LAN \w+ \(\d+ in table\)/)
    }
    const chainA = await pa.getAttribute('#net-chain', 'data-chain')
    const chainB = await pb.getAttribute('#net-chain', 'data-chain')
    genesisB = (await pb.getAttribute('#net-genesis', 'data-genesis'))!
    assert.notEqual(chainA, chainB, 'two fresh peers start two chains')
    // A malformed code gets its named error, and nothing is sent.
    await pb.fill('#netjoin-input', 'pv:join=notacid')
    await pb.click('#netjoin-send')
    await pb.waitForFunction(() => document.getElementById('netjoin-result')!.dataset.code === 'InvalidLinkError', null, { timeout: 10_000 })
    assert.equal(await pb.isVisible('#netjoin-confirm'), false)
  })

  it('a content link with A\'s peer, opened on B\'s page, fetches the file and offers it', async () => {
    const text = 'the harbour master\'s notes\n'.repeat(50)
    const added = await a.api.raw('POST', '/api/v0/content/add?name=notes.txt', { body: new TextEncoder().encode(text) })
    assert.equal(added.status, 200)
    const { cid } = await added.json() as { cid: string }
    const { link } = await a.api.request<{ code: string, link: string }>('GET', `/api/v0/content/link?cid=${cid}`)
    assert.match(link, /#content=/)
    await pb.evaluate(l => { location.hash = l.slice(l.indexOf('#')) }, link)
    await pb.waitForFunction(() => ['done', 'failed'].includes(document.getElementById('file-state')!.dataset.state ?? ''), null, { timeout: 60_000 })
    assert.equal(await pb.getAttribute('#file-state', 'data-state'), 'done', (await pb.textContent('#file-state')) ?? '')
    // The offered link serves the bytes (from B's own peer, which now holds them).
    const got = await pb.evaluate(async () => await (await fetch((document.getElementById('file-open') as HTMLAnchorElement).href)).text())
    assert.equal(got, text)
  })

  it('a space link with A\'s peer, opened on B\'s page, joins A\'s space', async () => {
    await pa.fill('#join-name', 'ada')
    await pa.fill('#create-name', 'Harbour')
    await pa.click('#create-send')
    await pa.waitForFunction(() => (window as any).peerverse.space() != null && document.getElementById('space-id')!.textContent !== '', null, { timeout: 30_000 })
    space = (await pa.textContent('#space-id'))!.trim()
    // The page's "link" button asks A's peer for the link: it carries A's addresses.
    await pa.click('#space-copy')
    await pa.waitForFunction(() => document.getElementById('space-id')!.dataset.link != null, null, { timeout: 30_000 })
    const link = (await pa.getAttribute('#space-id', 'data-link'))!
    assert.match(link, new RegExp(`#space=${space}&peer=`))
    assert.ok(link.includes(encodeURIComponent(`/p2p/${a.ready.peerId}`)), 'the link names A\'s peer')
    // B's client opens the same link at B's own address (the fragment is what a link carries).
    const fragment = link.slice(link.indexOf('#'))
    await pb.goto(`${new URL(pb.url()).origin}/${fragment}`)
    await pb.waitForFunction(id => (window as any).peerverse?.space() === id, space, { timeout: 60_000 })
    await pb.waitForFunction(() => document.getElementById('space-name')!.textContent === 'Harbour', null, { timeout: 30_000 })
    const didA = a.ready.did
    await pb.waitForFunction(d => (window as any).peerverse.avatars().some((x: { did: string }) => x.did === d), didA, { timeout: 30_000 })
    await pb.screenshot({ path: join(SHOTS, 'b-joined-by-link.png') })
  })

  it('the invite shown on A\'s page, accepted on B\'s page: B follows A\'s chain', async () => {
    const chainA = (await pa.getAttribute('#net-chain', 'data-chain'))!
    // B is connected to A now (through the space link) but on its own chain: its panel says so.
    await pb.waitForFunction(() => !document.getElementById('net-warning')!.hidden, null, { timeout: 30_000 })
    assert.match((await pb.textContent('#net-warning'))!, /another chain/)
    await pa.click('#invite')
    await pa.waitForFunction(() => (document.getElementById('invite-link')!.textContent ?? '') !== '', null, { timeout: 30_000 })
    const code = (await pa.textContent('#invite-code'))!.trim()
    const link = (await pa.textContent('#invite-link'))!.trim()
    assert.match(code, /^pv:join=/)
    assert.match(link, /^http:\/\/127\.0\.0\.1:\d+\/#join=/)
    // B opens the invite's link: its page asks first, then joins.
    await pb.evaluate(l => { location.hash = l.slice(l.indexOf('#')) }, link)
    await pb.waitForSelector('#netjoin-confirm:not([hidden])', { timeout: 10_000 })
    await pb.click('#netjoin-yes')
    await pb.waitForFunction(() => { const r = document.getElementById('netjoin-result')!; return !r.hidden && /Joined|Already/.test(r.textContent ?? '') || r.dataset.code != null }, null, { timeout: 120_000 })
    assert.equal(await pb.getAttribute('#netjoin-result', 'data-code'), null, await pb.textContent('#netjoin-result') ?? '')
    await pb.waitForFunction(c => document.getElementById('net-chain')!.dataset.chain === c, chainA, { timeout: 60_000 })
    await pb.waitForFunction(() => document.getElementById('net-warning')!.hidden, null, { timeout: 30_000 })
    const s = await b.api.request<NetworkStatus>('GET', '/api/v0/status')
    assert.equal(s.network?.chain, chainA)
    await pb.locator('#sec-network').scrollIntoViewIfNeeded()
    await pb.screenshot({ path: join(SHOTS, 'b-joined-network.png') })
    // B now follows a joined network: another network's invite (its own old devnet) is refused by name.
    await pb.fill('#netjoin-input', `pv:join=${genesisB}&peer=${encodeURIComponent(a.addr)}`)
    await pb.click('#netjoin-send')
    await pb.click('#netjoin-yes')
    await pb.waitForFunction(() => document.getElementById('netjoin-result')!.dataset.code != null, null, { timeout: 30_000 })
    assert.equal(await pb.getAttribute('#netjoin-result', 'data-code'), 'NetworkMismatchError')
    assert.equal(await pb.getAttribute('#net-chain', 'data-chain'), chainA, 'B stays on A\'s chain')
  })

  it('Explore on B lists the space A listed from its page, with the members present', async () => {
    await pa.click('#dir-own summary')
    await pa.fill('#dir-description', 'boats and nets')
    await pa.fill('#dir-tags', 'sea, meet')
    await pa.click('#dir-publish')
    await pa.waitForFunction(() => document.getElementById('dir-own')!.dataset.listed === 'true', null, { timeout: 30_000 })
    const row = `#explore li[data-space="${space}"]`
    await pb.waitForSelector(row, { timeout: 60_000 })
    assert.match((await pb.textContent(row))!, /Harbour/)
    assert.match((await pb.textContent(row))!, /#sea #meet/)
    // The count shown is the one B's peer gives (both A and B are in the space).
    await pb.waitForFunction(sel => Number(document.querySelector(sel)?.getAttribute('data-present') ?? 0) >= 1, row, { timeout: 30_000 })
    const shown = Number(await pb.getAttribute(row, 'data-present'))
    const dir = await b.api.request<{ listings: Array<{ space: string, present: number }> }>('GET', '/api/v0/directory')
    const listing = dir.listings.find(l => l.space === space)
    assert.ok(listing != null)
    assert.ok(shown >= 1)
    assert.match((await pb.textContent(row))!, new RegExp(`${shown} present`))
    await pb.locator('#sec-explore').scrollIntoViewIfNeeded()
    await pb.screenshot({ path: join(SHOTS, 'b-explore.png') })
    // Unlisted by its owner, it leaves A's Explore.
    await pa.click('#dir-unpublish')
    await pa.waitForFunction(sel => document.querySelector(sel) == null, row, { timeout: 30_000 })
    // A private space is never listed: the page shows the peer's named refusal.
    await pa.fill('#create-name', 'Vault')
    await pa.check('#create-private')
    await pa.click('#create-send')
    await pa.waitForFunction(() => document.getElementById('space-name')!.textContent === 'Vault', null, { timeout: 30_000 })
    await pa.waitForFunction(() => /private/.test(document.getElementById('dir-hint')!.textContent ?? ''), null, { timeout: 10_000 })
    await pa.click('#dir-publish')
    await pa.waitForSelector('#errors [data-code="PrivateSpaceListingError"]', { timeout: 30_000 })
    assert.deepEqual(problems, [], 'no uncaught errors on either page')
  })
})
