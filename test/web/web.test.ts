/**
 * The browser client end to end: two real peers (processes on loopback, one chain), two headless
 * Chromium pages (Debian's `chromium`, driven by playwright-core). A moves and B sees A's avatar
 * move; they chat both ways; A pays B and B's balance changes once the block is final; the owner
 * places a model added through the content layer and B sees it loaded from the swarm. Each test
 * saves a screenshot in test/screenshots/ (not committed); the README keeps one.
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
const set = new PeerSet()

/** A one-box GLB (positions and indices), built by hand so the test needs no asset files. */
function boxGlb (): Buffer {
  const P = [-0.5, 0, -0.5, 0.5, 0, -0.5, 0.5, 1, -0.5, -0.5, 1, -0.5, -0.5, 0, 0.5, 0.5, 0, 0.5, 0.5, 1, 0.5, -0.5, 1, 0.5]
  const I = [0, 2, 1, 0, 3, 2, 4, 5, 6, 4, 6, 7, 0, 1, 5, 0, 5, 4, 3, 7, 6, 3, 6, 2, 1, 2, 6, 1, 6, 5, 0, 4, 7, 0, 7, 3]
  const pos = Buffer.from(new Float32Array(P).buffer)
  const idx = Buffer.from(new Uint16Array(I).buffer)
  const bin = Buffer.concat([pos, idx, Buffer.alloc((4 - (idx.length % 4)) % 4)])
  const gltf = {
    asset: { version: '2.0' },
    scene: 0,
    scenes: [{ nodes: [0] }],
    nodes: [{ mesh: 0 }],
    meshes: [{ primitives: [{ attributes: { POSITION: 0 }, indices: 1, material: 0 }] }],
    materials: [{ pbrMetallicRoughness: { baseColorFactor: [0.9, 0.4, 0.1, 1] } }],
    buffers: [{ byteLength: bin.length }],
    bufferViews: [{ buffer: 0, byteOffset: 0, byteLength: pos.length }, { buffer: 0, byteOffset: pos.length, byteLength: idx.length }],
    accessors: [
      { bufferView: 0, componentType: 5126, count: 8, type: 'VEC3', min: [-0.5, 0, -0.5], max: [0.5, 1, 0.5] },
      { bufferView: 1, componentType: 5123, count: I.length, type: 'SCALAR' }
    ]
  }
  let json = Buffer.from(JSON.stringify(gltf))
  json = Buffer.concat([json, Buffer.alloc((4 - (json.length % 4)) % 4, 0x20)])
  const header = Buffer.alloc(12)
  header.writeUInt32LE(0x46546c67, 0)
  header.writeUInt32LE(2, 4)
  header.writeUInt32LE(12 + 8 + json.length + 8 + bin.length, 8)
  const chunk = (type: number, data: Buffer): Buffer => {
    const h = Buffer.alloc(8)
    h.writeUInt32LE(data.length, 0)
    h.writeUInt32LE(type, 4)
    return Buffer.concat([h, data])
  }
  return Buffer.concat([header, chunk(0x4e4f534a, json), chunk(0x004e4942, bin)])
}

interface Ready { url: string }

describe('the browser client, two peers and two pages', { timeout: 300_000, skip: existsSync(CHROMIUM) ? false : `no Chromium at ${CHROMIUM}` }, () => {
  let a: CliPeer, b: CliPeer
  let browser: Browser
  let pa: Page, pb: Page
  let didA = '', didB = ''
  const problems: string[] = []

  before(async () => {
    await mkdir(SHOTS, { recursive: true })
    a = await set.start()
    // B follows A's chain (A's peer is its validator), so a payment from A reaches B.
    b = await set.start({ bootstrap: [a.addr], extra: ['--genesis', join(a.dataDir, 'genesis.json')] })
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--use-angle=swiftshader', '--enable-unsafe-swiftshader']
    })
    pa = await cappedPage(browser, { viewport: { width: 1280, height: 800 } })
    pb = await cappedPage(browser, { viewport: { width: 1280, height: 800 } })
    for (const [name, page] of [['A', pa], ['B', pb]] as const) {
      page.on('pageerror', err => { problems.push(`${name}: ${err.message}`) })
    }
  })

  after(async () => {
    await browser?.close()
    await set.cleanup()
  })

  it('the page loads from the URL the peer prints; the token leaves the address bar', async () => {
    const url = (a.ready as unknown as Ready).url
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/\?token=/)
    await pa.goto(url)
    await pa.waitForFunction(() => (window as any).peerverse?.did() != null && (window as any).peerverse.frames() > 0, null, { timeout: 60_000 })
    assert.doesNotMatch(pa.url(), /token=/, 'the token is stripped from the address bar')
    didA = await pa.evaluate(() => (window as any).peerverse.did())
    assert.equal(didA, a.ready.did)
    // The API refuses the page's requests without the token.
    const status = await pa.evaluate(async () => (await fetch('/api/v0/status')).status)
    assert.equal(status, 401)
  })

  it('A creates a space, B joins it by link; A moves and B sees A\'s avatar move', async () => {
    await pa.fill('#join-name', 'ada')
    await pa.fill('#create-name', 'Town square')
    await pa.click('#create-send')
    await pa.waitForFunction(() => (window as any).peerverse.space() != null && document.getElementById('space-id')!.textContent !== '', null, { timeout: 30_000 })
    const space = (await pa.textContent('#space-id'))!.trim()
    await pb.goto(`${(b.ready as unknown as Ready).url}#space=${space}`)
    await pb.waitForFunction(id => (window as any).peerverse?.space() === id, space, { timeout: 60_000 })
    didB = await pb.evaluate(() => (window as any).peerverse.did())
    await pb.waitForFunction(d => (window as any).peerverse.avatars().some((x: { did: string }) => x.did === d), didA, { timeout: 30_000 })
    await pa.waitForFunction(d => (window as any).peerverse.avatars().some((x: { did: string }) => x.did === d), didB, { timeout: 30_000 })

    // A walks forward with the keyboard until it has gone 3 m, then stops.
    const start = await pa.evaluate(() => (window as any).peerverse.me().position as number[])
    await pa.focus('#scene')
    await pa.keyboard.down('KeyW')
    await pa.waitForFunction(p => { const q = (window as any).peerverse.me().position; return Math.hypot(q[0] - p[0], q[2] - p[2]) > 3 }, start, { timeout: 30_000 })
    await pa.keyboard.up('KeyW')
    const end = await pa.evaluate(() => (window as any).peerverse.me().position as number[])
    // B's view of A arrives where A stopped.
    await pb.waitForFunction(([d, p]) => {
      const av = (window as any).peerverse.avatars().find((x: { did: string }) => x.did === d)
      return av != null && Math.hypot(av.position[0] - p[0], av.position[2] - p[2]) < 0.05
    }, [didA, end] as const, { timeout: 30_000 })
    await pb.screenshot({ path: join(SHOTS, 'b-sees-a.png') })
  })

  it('they chat both ways', async () => {
    await pa.fill('#chat-input', 'hello from ada')
    await pa.click('#chat-send')
    await pb.waitForFunction(() => document.getElementById('chat-log')!.textContent!.includes('hello from ada'), null, { timeout: 30_000 })
    await pb.fill('#chat-input', 'hi ada, bob here')
    await pb.press('#chat-input', 'Enter')
    await pa.waitForFunction(() => document.getElementById('chat-log')!.textContent!.includes('bob here'), null, { timeout: 30_000 })
    await pa.screenshot({ path: join(SHOTS, 'chat.png') })
  })

  it('A pays B: B\'s balance changes when the block is final; an overdraft shows its reason', async () => {
    const before = (await pa.textContent('#balance'))!
    await pa.click('#faucet')
    await pa.waitForFunction(() => document.querySelector('#tx-status li[data-status="committed"]') != null, null, { timeout: 60_000 })
    await pa.waitForFunction(b0 => document.getElementById('balance')!.textContent !== b0, before, { timeout: 30_000 })
    const balanceB = (await pb.textContent('#balance'))!.trim()
    await pa.click(`#people button[data-pay="${didB}"]`)
    await pa.fill('#pay-amount', '25')
    await pa.click('#pay-send')
    await pa.waitForFunction(() => document.querySelectorAll('#tx-status li[data-status="committed"]').length >= 2, null, { timeout: 60_000 })
    await pb.waitForFunction(b0 => document.getElementById('balance')!.textContent!.trim() !== b0, balanceB, { timeout: 60_000 })
    assert.equal(BigInt((await pb.textContent('#balance'))!.trim()) - BigInt(balanceB), 25n)
    await pa.fill('#pay-to', didB)
    await pa.fill('#pay-amount', '999999999999999999')
    await pa.click('#pay-send')
    await pa.waitForFunction(() => document.querySelector('#tx-status li[data-status="rejected"]') != null || document.querySelector('#errors [data-testid="error"]') != null, null, { timeout: 60_000 })
    const shown = await pa.evaluate(() => (document.querySelector('#tx-status li[data-status="rejected"]') ?? document.querySelector('#errors [data-testid="error"]'))!.textContent!)
    assert.match(shown, /Insufficient|balance/i)
    await pa.screenshot({ path: join(SHOTS, 'wallet.png') })
  })

  it('the owner places a model added through the content layer; B sees it loaded', async () => {
    const added = await a.api.raw('POST', '/api/v0/content/add?name=box.glb', { body: new Uint8Array(boxGlb()) })
    assert.equal(added.status, 200)
    const { cid } = await added.json() as { cid: string }
    await pa.fill('#place-cid', cid)
    await pa.click('#place-send')
    await pa.waitForFunction(c => (window as any).peerverse.objects().some((o: { model: string, loaded: boolean }) => o.model === c && o.loaded), cid, { timeout: 60_000 })
    await pb.waitForFunction(c => (window as any).peerverse.objects().some((o: { model: string, loaded: boolean }) => o.model === c && o.loaded), cid, { timeout: 60_000 })
    // B holds the model's blocks now: it came from the swarm, not from a server.
    const pins = await b.api.request<{ usedBytes?: number, blocks?: number }>('GET', '/api/v0/content/store')
    assert.ok((pins.blocks ?? 0) > 0, 'B stored the model\'s blocks')
    await pb.screenshot({ path: join(SHOTS, 'b-sees-model.png') })
    assert.deepEqual(problems, [], 'no uncaught errors on either page')
  })
})
