/**
 * Makes the README's picture of the client (docs/client.png): three real peers on loopback, each
 * with its own page in headless Chromium, in one space; B's page, looking at A and C (each in
 * their own avatar: A in a VRM added to the swarm, C in a project default), after a few chat
 * lines. Run: `node tools/screenshot.ts [OUT.png]` (needs Debian's chromium).
 */
import { join } from 'node:path'
import { readFile } from 'node:fs/promises'
import { chromium, type Page } from 'playwright-core'
import { PeerSet, ROOT, type CliPeer } from '../test/helpers/cli-peer.ts'

const OUT = process.argv[2] ?? join(ROOT, 'docs/client.png')
const WAIT = { timeout: 120_000 }
const set = new PeerSet()
const urlOf = (p: CliPeer): string => (p.ready as unknown as { url: string }).url

async function hold (page: Page, key: string, ms: number): Promise<void> {
  await page.keyboard.down(key)
  await new Promise(resolve => setTimeout(resolve, ms))
  await page.keyboard.up(key)
}

try {
  const a = await set.start()
  const genesis = ['--genesis', join(a.dataDir, 'genesis.json')]
  const b = await set.start({ bootstrap: [a.addr], extra: genesis })
  const c = await set.start({ bootstrap: [a.addr], extra: genesis })
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox', '--disable-gpu', '--use-angle=swiftshader', '--enable-unsafe-swiftshader'] })
  const open = async (): Promise<Page> => await (await browser.newContext({ viewport: { width: 1280, height: 760 } })).newPage()
  const [pa, pb, pc] = await Promise.all([open(), open(), open()])

  const res = await a.api.raw('POST', '/api/v0/content/add?name=bo.vrm', { body: new Uint8Array(await readFile(join(ROOT, 'web/assets/avatars/bo.vrm'))) })
  const cid = (await res.json() as { cid: string }).cid
  await pa.goto(urlOf(a))
  await pa.waitForFunction(() => (window as any).peerverse?.did() != null, null, WAIT)
  await pa.click('#my-profile summary')
  await pa.fill('#profile-avatar-input', cid)
  await pa.click('#profile-save')
  await pa.fill('#join-name', 'Ana')
  await pa.fill('#create-name', 'The Square')
  await pa.click('#create-send')
  await pa.waitForFunction(() => (window as any).peerverse.space() != null && document.getElementById('space-id')!.textContent !== '', null, WAIT)
  await pa.click('#space-copy')
  await pa.waitForFunction(() => document.getElementById('space-id')!.dataset.link != null, null, WAIT)
  const link = await pa.evaluate(() => document.getElementById('space-id')!.dataset.link!)
  for (const [page, peer, name] of [[pb, b, 'Ben'], [pc, c, 'Cleo']] as const) {
    await page.goto(urlOf(peer))
    await page.waitForFunction(() => (window as any).peerverse?.did() != null, null, WAIT)
    await page.fill('#join-id', link)
    await page.fill('#join-name', name)
    await page.click('#join-send')
    await page.waitForFunction(() => (window as any).peerverse.space() != null, null, WAIT)
  }
  // A and C step apart; B walks on ahead and turns round until both stand in its view, facing it.
  await pa.focus('#scene'); await hold(pa, 'KeyA', 600)
  await pc.focus('#scene'); await hold(pc, 'KeyD', 600)
  await pb.focus('#scene'); await hold(pb, 'KeyW', 1500)
  const dids = await Promise.all([pa, pc].map(async p => await p.evaluate(() => (window as any).peerverse.did() as string)))
  for (let i = 0; i < 120; i++) {
    const seen = await pb.evaluate(ds => ds.every(d => {
      const at = (window as any).peerverse.avatarScreen(d) as { x: number } | null
      const w = document.getElementById('scene')!.clientWidth
      return at != null && at.x > w * 0.2 && at.x < w * 0.8
    }), dids)
    if (seen) break
    await hold(pb, 'ArrowLeft', 80)
  }
  await pb.waitForFunction(ds => ds.every(d => (window as any).peerverse.avatars().find((x: any) => x.did === d)?.loaded === true), dids, WAIT)
  for (const [page, text] of [[pa, 'Welcome to the Square! Grab a parcel by the fountain.'], [pc, 'Hi Ana, love the jacket'], [pb, 'Just joined from a link, nothing to set up']] as const) {
    await page.fill('#chat-input', text)
    await page.click('#chat-send')
  }
  await pb.waitForFunction(() => document.querySelectorAll('#chat-log li').length >= 3, null, WAIT)
  await new Promise(resolve => setTimeout(resolve, 1500))
  await pb.screenshot({ path: OUT })
  console.log(`wrote ${OUT}`)
  await browser.close()
} finally {
  await set.cleanup()
}
