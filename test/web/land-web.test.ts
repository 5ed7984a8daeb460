/**
 * Land and minting in the browser, end to end: two real peers (processes on loopback, one devnet
 * chain) and two headless Chromium pages. A creates a space; B's page claims a parcel in it with
 * no grant: the ledger refuses it (NotGrantedError, shown on B's page) and the parcel is nowhere,
 * not on A's page, not on either peer's ledger. A's page grants B that rectangle; B's page claims
 * it again: final, and both pages show B's parcel. B's page mints an asset from a file it adds
 * through its peer, and B's wallet lists it. Input the ledger would refuse as malformed is refused
 * in the page by name before anything is signed.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { chromium, type Browser, type Page } from 'playwright-core'
import { PeerSet, runCli, waitFor, type CliPeer } from '../helpers/cli-peer.ts'
import { MAX_GRID as LEDGER_MAX_GRID, MAX_NAME_LENGTH, MAX_PARCEL_SIDE as LEDGER_MAX_PARCEL_SIDE } from '../../src/ledger/tx.ts'
import { MAX_LAND_PRICE as LEDGER_MAX_LAND_PRICE } from '../../src/ledger/land.ts'
import { MAX_ASSET_NAME_LENGTH, MAX_GRID, MAX_LAND_PRICE, MAX_PARCEL_SIDE } from '../../web/src/panels/land-limits.ts'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const WAIT = { timeout: 60_000 }
const set = new PeerSet()

interface Ready { url: string }
interface Parcel { id: string, owner: string, space: string, x: number, y: number, w: number, h: number }
interface LandAnswer { known: boolean, owner?: string, grants: Array<{ grantee: string, x: number, y: number, w: number, h: number }>, parcels: Parcel[] }
const urlOf = (p: CliPeer): string => (p.ready as unknown as Ready).url
/** The rectangle B claims, first without a grant and then inside A's grant. */
const RECT = { x: 40, y: 60, w: 6, h: 5 }

async function fillRect (page: Page, prefix: string, r: { x: number | string, y: number | string, w: number | string, h: number | string }): Promise<void> {
  for (const k of ['x', 'y', 'w', 'h'] as const) await page.fill(`#${prefix}-${k}`, String(r[k]))
}

/** The link to the space shown that the page's `link` button makes (the space and its holders' addresses). */
async function linkOf (page: Page): Promise<string> {
  await page.evaluate(() => { delete document.getElementById('space-id')!.dataset.link })
  await page.click('#space-copy')
  await page.waitForFunction(() => document.getElementById('space-id')!.dataset.link != null, null, WAIT)
  return await page.evaluate(() => document.getElementById('space-id')!.dataset.link!)
}

async function height (p: CliPeer): Promise<number> {
  return (await p.api.request<{ height: number }>('GET', '/api/v0/ledger/status')).height
}

describe('land and minting in the browser, two peers and two pages', { timeout: 480_000, skip: existsSync(CHROMIUM) ? false : `no Chromium at ${CHROMIUM}` }, () => {
  let a: CliPeer, b: CliPeer
  let browser: Browser
  let pa: Page, pb: Page
  let didA = '', didB = '', space = ''
  let funded: Promise<unknown>
  let launched: Promise<Browser> | undefined
  const problems: string[] = []

  before(async () => {
    launched = chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--use-angle=swiftshader', '--enable-unsafe-swiftshader']
    })
    a = await set.start()
    b = await set.start({ bootstrap: [a.addr], extra: ['--genesis', join(a.dataDir, 'genesis.json')] })
    didA = a.ready.did
    didB = b.ready.did
    // B pays fees from the devnet's faucet (A, whose peer made the chain, holds funds already);
    // the pages load meanwhile, and the first claim waits for it.
    const faucet = await b.api.request<{ id: string }>('POST', '/api/v0/ledger/faucet', {})
    funded = waitFor('the faucet transfer to B', async () => (await b.api.request<{ status: string }>('GET', `/api/v0/ledger/tx/${faucet.id}`)).status === 'committed', 60_000, 200)
    funded.catch(() => {})
    browser = await launched
    const open = async (name: string): Promise<Page> => {
      const page = await (await browser.newContext({ viewport: { width: 1280, height: 800 } })).newPage()
      page.on('pageerror', err => { problems.push(`${name}: ${err.message}`) })
      page.setDefaultTimeout(WAIT.timeout)
      return page
    }
    ;[pa, pb] = await Promise.all([open('A'), open('B')])
  })

  after(async () => {
    await (browser ?? await launched?.catch(() => undefined))?.close()
    await set.cleanup()
  })

  it('the page checks against the ledger\'s own limits', () => {
    assert.equal(MAX_GRID, LEDGER_MAX_GRID)
    assert.equal(MAX_PARCEL_SIDE, LEDGER_MAX_PARCEL_SIDE)
    assert.equal(MAX_LAND_PRICE, LEDGER_MAX_LAND_PRICE)
    assert.equal(MAX_ASSET_NAME_LENGTH, MAX_NAME_LENGTH)
  })

  it("a claim in A's space without a grant is refused everywhere; with A's grant it is final on both pages", async () => {
    assert.ok(BigInt((await a.api.request<{ balance: string }>('GET', '/api/v0/ledger/balance')).balance) > 0n)

    await pa.goto(urlOf(a))
    await pa.waitForFunction(() => (window as any).peerverse?.did() != null, null, WAIT)
    await pa.fill('#join-name', 'ada')
    await pa.fill('#create-name', 'Plaza')
    await pa.click('#create-send')
    await pa.waitForFunction(() => (window as any).peerverse.space() != null && document.getElementById('space-id')!.textContent !== '', null, WAIT)
    space = (await pa.textContent('#space-id'))!.trim()
    // A's page: the owner's tools, the price, and a claim proposed around where A stands.
    await pa.waitForSelector('#land-owner:not([hidden])', WAIT)
    assert.equal(await pa.textContent('#land-price'), 'not for sale')
    assert.equal(await pa.evaluate(() => (window as any).peerverse.land().owner), didA)
    assert.equal(await pa.inputValue('#land-w'), '4')

    // B opens the link A's page makes: it names A's peer, asked first.
    await pb.goto(urlOf(b) + new URL(await linkOf(pa)).hash)
    await pb.waitForFunction(id => (window as any).peerverse.space() === id && (window as any).peerverse.land().owner != null, space, WAIT)
    assert.equal(await pb.isVisible('#land-owner'), false, 'no owner tools for B')

    // Malformed input is refused in the page by name, and nothing is signed.
    await fillRect(pb, 'land', RECT)
    for (const [field, value, error] of [['w', '1.5', 'InvalidParcelError'], ['w', String(MAX_PARCEL_SIDE + 1), 'ParcelTooLargeError'], ['x', '254', 'OutsideSpaceError']] as const) {
      await pb.fill(`#land-${field}`, value)
      await pb.click('#land-claim')
      await pb.waitForSelector(`#errors [data-code="${error}"]`, WAIT)
      await pb.fill(`#land-${field}`, String(RECT[field]))
    }
    assert.equal(await pb.locator('#land-tx li').count(), 0, 'nothing was submitted')

    // Without a grant: the page says the ledger will refuse, B claims anyway, and the ledger does.
    await funded
    assert.equal(await pb.getAttribute('#land-cost', 'data-state'), 'refused')
    await pb.click('#land-claim')
    await pb.waitForSelector('#land-tx li[data-kind="claim"][data-status="rejected"][data-error="NotGrantedError"]', WAIT)
    await pb.waitForSelector('#errors [data-code="NotGrantedError"]', WAIT)
    const refusedAt = await height(b)
    await waitFor('A\'s ledger at the height of the refusal', async () => await height(a) >= refusedAt, 60_000, 200)
    for (const p of [a, b]) {
      const land = await p.api.request<LandAnswer>('GET', `/api/v0/ledger/land/${encodeURIComponent(space)}`)
      assert.deepEqual(land.parcels, [], 'no parcel on either peer\'s ledger')
      assert.deepEqual((await p.api.request<{ parcels: Parcel[] }>('GET', `/api/v0/ledger/parcels/${encodeURIComponent(didB)}`)).parcels, [])
    }
    const cli = await runCli(['land', space, '--data', a.dataDir, '--json'])
    assert.equal(cli.code, 0, cli.stderr)
    assert.deepEqual((JSON.parse(cli.stdout) as LandAnswer).parcels, [])
    await pa.waitForFunction(h => (window as any).peerverse.land().height >= h, refusedAt, WAIT)
    assert.deepEqual(await pa.evaluate(() => (window as any).peerverse.land().parcels), [])
    assert.equal(await pa.locator('#land-parcels li[data-parcel]').count(), 0)

    // A's page grants B that rectangle, B picked from the people here.
    await pa.waitForSelector(`#land-grant-person option[value="${didB}"]`, { ...WAIT, state: 'attached' })
    await pa.selectOption('#land-grant-person', didB)
    assert.equal(await pa.inputValue('#land-grant-to'), didB)
    await fillRect(pa, 'land-grant', RECT)
    await pa.click('#land-grant-send')
    await pa.waitForSelector('#land-tx li[data-kind="land-grant"][data-status="committed"]', WAIT)
    await pa.waitForSelector(`#land-grants li[data-grantee="${didB}"] button[data-revoke]`, WAIT)
    await pb.waitForFunction(([d, r]) => (window as any).peerverse.land().grants.some((g: any) => g.grantee === d && g.x === r.x && g.y === r.y && g.w === r.w && g.h === r.h), [didB, RECT] as const, WAIT)
    assert.equal(await pb.getAttribute('#land-cost', 'data-state'), 'granted')

    // B claims inside the grant: final, and both pages show B's parcel (and only that one).
    await pb.click('#land-claim')
    const done = pb.locator('#land-tx li[data-kind="claim"][data-status="committed"]')
    await done.waitFor(WAIT)
    assert.match(await done.innerText(), /final at height \d+/)
    for (const page of [pa, pb]) {
      await page.waitForSelector(`#land-parcels li[data-owner="${didB}"]`, WAIT)
      const parcels = await page.evaluate(() => (window as any).peerverse.land().parcels) as Parcel[]
      assert.deepEqual(parcels.map(p => ({ owner: p.owner, space: p.space, x: p.x, y: p.y, w: p.w, h: p.h })), [{ owner: didB, space, ...RECT }])
    }
    const onA = await a.api.request<LandAnswer>('GET', `/api/v0/ledger/land/${encodeURIComponent(space)}`)
    assert.deepEqual(onA.parcels.map(p => p.owner), [didB])
    await pb.waitForSelector('#parcels li[data-parcel]', { ...WAIT, state: 'attached' })
  })

  it("the owner sells at a price and revokes the grant: a claim over B's max price is refused, at it the owner is paid", async () => {
    await pa.fill('#land-price-input', '3')
    await pa.click('#land-price-send')
    await pa.click(`#land-grants li[data-grantee="${didB}"] button[data-revoke]`)
    for (const kind of ['land-price', 'land-revoke']) await pa.waitForSelector(`#land-tx li[data-kind="${kind}"][data-status="committed"]`, WAIT)
    await pb.waitForFunction(() => { const l = (window as any).peerverse.land(); return l.price === '3' && l.grants.length === 0 }, null, WAIT)
    assert.equal(await pb.textContent('#land-price'), '3 a cell')
    assert.equal(await pb.inputValue('#land-max-price'), '3', 'the max price B agrees to follows the price shown')
    await fillRect(pb, 'land', { x: 100, y: 100, w: 2, h: 2 })
    assert.equal(await pb.getAttribute('#land-cost', 'data-state'), 'price')
    assert.match((await pb.textContent('#land-cost'))!, /\b12 to the owner/)

    await pb.fill('#land-max-price', '2')
    await pb.click('#land-claim')
    await pb.waitForSelector('#land-tx li[data-kind="claim"][data-status="rejected"][data-error="PriceAboveLimitError"]', WAIT)
    await pb.waitForSelector('#errors [data-code="PriceAboveLimitError"]', WAIT)

    const balance = async (p: CliPeer): Promise<bigint> => BigInt((await p.api.request<{ balance: string }>('GET', '/api/v0/ledger/balance')).balance)
    const [beforeA, beforeB] = [await balance(a), await balance(b)]
    await pb.fill('#land-max-price', '3')
    await pb.click('#land-claim')
    await pb.waitForFunction(() => document.querySelectorAll('#land-tx li[data-kind="claim"][data-status="committed"]').length === 2, null, WAIT)
    // 2 x 2 cells at 3: B pays 12 and the fee (1); A, the devnet's only validator, gets both.
    await waitFor('B\'s payment for the parcel', async () => await balance(b) === beforeB - 13n, 30_000, 200)
    assert.equal(await balance(a), beforeA + 13n)
    await pa.waitForFunction(d => (window as any).peerverse.land().parcels.filter((p: Parcel) => p.owner === d).length === 2, didB, WAIT)
  })

  it("B's page mints an asset from a file added through its peer, and B's wallet lists it", async () => {
    await pb.setInputFiles('#land-mint-file', { name: 'statue.txt', mimeType: 'text/plain', buffer: Buffer.from('a statue, in words') })
    await pb.waitForFunction(() => (document.getElementById('land-mint-cid') as HTMLInputElement).value !== '', null, WAIT)
    // A name over the ledger's limit is refused in the page.
    await pb.fill('#land-mint-name', 'x'.repeat(MAX_ASSET_NAME_LENGTH + 1))
    await pb.click('#land-mint-send')
    await pb.waitForSelector('#errors [data-code="InvalidAssetNameError"]', WAIT)
    assert.equal(await pb.locator('#land-tx li[data-kind="mint"]').count(), 0)
    await pb.fill('#land-mint-name', 'statue')
    await pb.click('#land-mint-send')
    await pb.waitForSelector('#land-minted[data-asset]', WAIT)
    const asset = (await pb.getAttribute('#land-minted', 'data-asset'))!
    assert.match(await pb.innerText('#land-minted'), /final at height \d+/)
    await pb.waitForSelector(`#assets li[data-asset="${asset}"]`, { ...WAIT, state: 'attached' })
    const assets = await b.api.request<{ assets: Array<{ id: string, name: string }> }>('GET', '/api/v0/ledger/assets')
    assert.deepEqual(assets.assets.map(x => [x.id, x.name]), [[asset, 'statue']])
    assert.deepEqual(problems, [], 'no uncaught errors on either page')
  })
})
