/**
 * Voice in the browser client end to end: real peers (processes on loopback, one chain), one
 * headless Chromium per speaking page, each with a fake microphone playing its own pure tone
 * (test/helpers/wav.ts). A page hears another when the tone of that member stands out in the
 * spectrum of everything it plays (the master AnalyserNode, `peerverse.spectrum()`), and
 * `peerverse.voice()` shows that member received at a level above zero. Two pages hear each
 * other; a third joins and all hear all; a personal mute from the people list silences one member
 * at that listener only; a member who walks beyond hearing range goes silent for the others.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { chromium, type Browser, type Page } from 'playwright-core'
import { PeerSet, ROOT, type CliPeer } from '../helpers/cli-peer.ts'
import { cappedPage } from '../helpers/frame-rate.ts'
import { writeToneWav } from '../helpers/wav.ts'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const SHOTS = join(ROOT, 'test/screenshots')
/**
 * Each member's tone (Hz): none a low harmonic of another, and none where another's concealment
 * sidebands fall (a 20 ms frame repeated puts them every 50 Hz around its tone).
 */
const TONES = { A: 440, B: 660, C: 925 } as const
/**
 * A tone is heard when a spectrum peak within HZ_TOLERANCE of it (bins are 5.9 Hz) stands above
 * MIN_DB and within WITHIN_DB of the loudest peak: concealment's clicks spread low peaks all over
 * the spectrum, well under the tones themselves.
 */
const HZ_TOLERANCE = 8
const MIN_DB = -75
const WITHIN_DB = 20
/** Beyond the client's and the peer's HEARING_RANGE_M (30 m), and beyond presence's near radius. */
const WALK_AWAY_M = 45
const WAIT_MS = 60_000

type Name = keyof typeof TONES
interface Member { name: Name, peer: CliPeer, browser: Browser, page: Page, did: string }
interface Ready { url: string }

const set = new PeerSet()

/** Waits until the page hears hz (or, with present false, until it does not); says what it heard if not. */
async function waitHearing (page: Page, hz: number, present = true): Promise<void> {
  await hearing(page, hz, present).catch(async (err: Error) => {
    const now = await page.evaluate(async () => ({
      voice: (window as any).peerverse.voice(),
      spectrum: (window as any).peerverse.spectrum().slice(0, 6),
      peer: await fetch(`/api/v0/voice?space=${encodeURIComponent((window as any).peerverse.space())}`, { headers: { authorization: `Bearer ${sessionStorage.getItem('peerverse.token')}` } }).then(async r => await r.json())
    })).catch(() => undefined)
    throw new Error(`${present ? 'never heard' : 'still heard'} ${hz} Hz: ${err.message.split('\n')[0]}; voice ${JSON.stringify(now)}`)
  })
}

async function hearing (page: Page, hz: number, present: boolean): Promise<void> {
  await page.waitForFunction(([f, tol, min, within, want]) => {
    const peaks = (window as any).peerverse.spectrum() as Array<{ hz: number, db: number }>
    const top = Math.max(...peaks.map(p => p.db))
    return peaks.some(p => Math.abs(p.hz - f) <= tol && p.db > min && p.db >= top - within) === want
  }, [hz, HZ_TOLERANCE, MIN_DB, WITHIN_DB, present] as const, { timeout: WAIT_MS, polling: 100 })
}

/**
 * Samples the page's spectrum for `frames` animation frames: in how many each tone was heard.
 * A measuring window, so that "not heard" means not heard throughout, not at one quiet instant.
 */
async function listen (page: Page, tones: number[], frames = 60): Promise<number[]> {
  return await page.evaluate(async ([list, n, tol, min, within]) => {
    const counts = list.map(() => 0)
    for (let i = 0; i < n; i++) {
      await new Promise(resolve => requestAnimationFrame(resolve))
      const peaks = (window as any).peerverse.spectrum() as Array<{ hz: number, db: number }>
      const top = Math.max(...peaks.map(p => p.db))
      list.forEach((f, k) => { if (peaks.some(p => Math.abs(p.hz - f) <= tol && p.db > min && p.db >= top - within)) counts[k]++ })
    }
    return counts
  }, [tones, frames, HZ_TOLERANCE, MIN_DB, WITHIN_DB] as const)
}

/** Waits until the page plays did's audio: received, at a level above zero. */
async function waitReceiving (page: Page, did: string): Promise<void> {
  await page.waitForFunction(d => {
    const p = (window as any).peerverse.voice().peers.find((x: { did: string }) => x.did === d)
    return p != null && p.receiving === true && p.level > 0
  }, did, { timeout: WAIT_MS, polling: 100 })
}

async function peerView (page: Page, did: string): Promise<{ did: string, level: number, receiving: boolean, delayMs: number, targetMs: number, jitterMs: number, late: number, concealed: number } | undefined> {
  return await page.evaluate(d => (window as any).peerverse.voice().peers.find((x: { did: string }) => x.did === d), did)
}

describe('voice in the browser client, on real peers', { timeout: 600_000, skip: existsSync(CHROMIUM) ? false : `no Chromium at ${CHROMIUM}` }, () => {
  const members = new Map<Name, Member>()
  const problems: string[] = []
  let space = ''
  let dir = ''

  const m = (name: Name): Member => members.get(name) as Member

  /** A peer, a browser whose microphone plays the member's tone, and its page on that peer. */
  async function open (name: Name): Promise<Member> {
    const first = members.get('A')
    const peer = first == null
      ? await set.start()
      : await set.start({ bootstrap: [first.peer.addr], extra: ['--genesis', join(first.peer.dataDir, 'genesis.json')] })
    const wav = await writeToneWav(join(dir, `tone-${name}.wav`), TONES[name], 10)
    // No WebGL: the 3D view is off (the client keeps the scene and the panel without drawing), so
    // three pages drawing in software do not starve the audio on a small machine. Voice needs
    // only the scene's positions, which are kept.
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run',
        '--disable-webgl',
        '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream', `--use-file-for-fake-audio-capture=${wav}`,
        '--autoplay-policy=no-user-gesture-required']
    })
    const page = await cappedPage(browser, { viewport: { width: 640, height: 400 } })
    page.on('pageerror', err => { problems.push(`${name}: ${err.message}`) })
    const url = (peer.ready as unknown as Ready).url
    const member: Member = { name, peer, browser, page, did: peer.ready.did }
    members.set(name, member)
    if (first == null) {
      await page.goto(url)
      await page.waitForFunction(() => (window as any).peerverse?.did() != null, null, { timeout: WAIT_MS })
      await page.fill('#join-name', name)
      await page.fill('#create-name', 'Voice square')
      await page.click('#create-send')
      await page.waitForFunction(() => (window as any).peerverse.space() != null && document.getElementById('space-id')!.textContent !== '', null, { timeout: WAIT_MS })
      space = (await page.textContent('#space-id'))!.trim()
    } else {
      await page.goto(`${url}#space=${space}`)
      await page.waitForFunction(id => (window as any).peerverse?.space() === id, space, { timeout: WAIT_MS })
    }
    // Everyone sees everyone's avatar (presence flows both ways) before voice is judged.
    for (const other of members.values()) {
      if (other === member) continue
      await page.waitForFunction(d => (window as any).peerverse.avatars().some((x: { did: string }) => x.did === d), other.did, { timeout: WAIT_MS })
      await other.page.waitForFunction(d => (window as any).peerverse.avatars().some((x: { did: string }) => x.did === d), member.did, { timeout: WAIT_MS })
    }
    // The microphone on; voice is connected for the space and we are sending.
    await page.click('#voice-toggle')
    await page.waitForFunction(() => { const v = (window as any).peerverse.voice(); return v.on === true && v.muted === false }, null, { timeout: WAIT_MS })
    assert.equal(await page.getAttribute('#voice-toggle', 'data-state'), 'on')
    return member
  }

  before(async () => {
    await mkdir(SHOTS, { recursive: true })
    dir = await set.tempDir()
  })

  after(async () => {
    for (const x of members.values()) await x.browser.close().catch(() => {})
    await set.cleanup()
  })

  it('two pages on two peers: each hears the other\'s tone and not its own', async () => {
    const a = await open('A')
    const b = await open('B')
    await waitHearing(a.page, TONES.B)
    await waitHearing(b.page, TONES.A)
    await waitReceiving(a.page, b.did)
    await waitReceiving(b.page, a.did)
    // Over a window: our own tone at most in a stray frame (a concealment click can put a low
    // peak anywhere while the other's tone is briefly faded), the other's in most.
    const [ownA, otherA] = await listen(a.page, [TONES.A, TONES.B])
    const [ownB, otherB] = await listen(b.page, [TONES.B, TONES.A])
    assert.ok(ownA <= 3 && otherA > ownA * 5, `A does not hear itself (own ${ownA}, B's ${otherA} of 60 frames)`)
    assert.ok(ownB <= 3 && otherB > ownB * 5, `B does not hear itself (own ${ownB}, A's ${otherB} of 60 frames)`)
    // The speaking indicator: B's name tag at A, and B's row in A's people list.
    // (The tag is in the page but not shown: both avatars stand on the same spot, B's behind A's eyes.)
    await a.page.waitForSelector(`#labels .tag.speaking[data-did="${b.did}"]`, { timeout: WAIT_MS, state: 'attached' })
    await a.page.waitForSelector(`#people li.speaking[data-did="${b.did}"]`, { timeout: WAIT_MS, state: 'attached' })
    const jb = await peerView(a.page, b.did)
    console.log(`# A's jitter buffer for B on loopback: delay ${jb?.delayMs} ms (target ${jb?.targetMs} ms, measured jitter ${jb?.jitterMs} ms), ${jb?.late} late, ${jb?.concealed} concealed`)
    await a.page.screenshot({ path: join(SHOTS, 'voice-a-hears-b.png') })
  })

  it('a third page joins: each hears the two others', async () => {
    const c = await open('C')
    const a = m('A')
    const b = m('B')
    for (const [page, tones] of [[a.page, [TONES.B, TONES.C]], [b.page, [TONES.A, TONES.C]], [c.page, [TONES.A, TONES.B]]] as const) {
      for (const hz of tones) await waitHearing(page, hz)
    }
    await waitReceiving(c.page, a.did)
    await waitReceiving(c.page, b.did)
    await waitReceiving(a.page, c.did)
  })

  it('a personal mute from the people list silences that member at that listener only', async () => {
    const a = m('A')
    const b = m('B')
    const c = m('C')
    await a.page.click(`#people button[data-voice-mute="${b.did}"]`)
    try {
      assert.equal(await a.page.getAttribute(`#people button[data-voice-mute="${b.did}"]`, 'aria-pressed'), 'true')
      await waitHearing(a.page, TONES.B, false)
      const [bAtA] = await listen(a.page, [TONES.B])
      assert.equal(bAtA, 0, `A muted B, yet heard ${TONES.B} Hz in ${bAtA}/60 frames`)
      assert.equal((await peerView(a.page, b.did))?.level, 0, 'B plays at level 0 at A')
      // A still hears C; C still hears B; B still hears A (a mute is the listener's alone).
      await waitHearing(a.page, TONES.C)
      await waitHearing(c.page, TONES.B)
      await waitHearing(b.page, TONES.A)
    } finally {
      // Unmuted again (whatever happened above, so the next test starts with everyone audible).
      await a.page.click(`#people button[data-voice-mute="${b.did}"]`)
    }
    await waitHearing(a.page, TONES.B)
    await waitReceiving(a.page, b.did)
  })

  it('a member who walks beyond hearing range is heard by nobody; the others still hear each other', async () => {
    const a = m('A')
    const b = m('B')
    const c = m('C')
    const start = await c.page.evaluate(() => (window as any).peerverse.me().position as number[])
    await c.page.focus('#scene')
    await c.page.keyboard.down('ShiftLeft')
    await c.page.keyboard.down('KeyW')
    await c.page.waitForFunction(([p, d]) => { const q = (window as any).peerverse.me().position; return Math.hypot(q[0] - p[0], q[2] - p[2]) > d }, [start, WALK_AWAY_M] as const, { timeout: WAIT_MS })
    await c.page.keyboard.up('KeyW')
    await c.page.keyboard.up('ShiftLeft')
    for (const x of [a, b]) {
      await waitHearing(x.page, TONES.C, false)
      await x.page.waitForFunction(d => (window as any).peerverse.voice().peers.find((p: { did: string }) => p.did === d)?.receiving !== true, c.did, { timeout: WAIT_MS, polling: 100 })
    }
    const [cAtA] = await listen(a.page, [TONES.C])
    const [cAtB] = await listen(b.page, [TONES.C])
    assert.equal(cAtA, 0, `A heard C beyond range in ${cAtA}/60 frames`)
    assert.equal(cAtB, 0, `B heard C beyond range in ${cAtB}/60 frames`)
    await waitHearing(a.page, TONES.B)
    await waitHearing(b.page, TONES.A)
    // And C, far away, hears neither.
    await c.page.waitForFunction(() => (window as any).peerverse.voice().peers.every((p: { receiving: boolean }) => !p.receiving), null, { timeout: WAIT_MS, polling: 100 })
    await waitHearing(c.page, TONES.A, false)
    await waitHearing(c.page, TONES.B, false)
    const [aAtC, bAtC] = await listen(c.page, [TONES.A, TONES.B])
    assert.equal(aAtC + bAtC, 0, `C heard A or B from beyond range (${aAtC}, ${bAtC} frames)`)
    assert.deepEqual(problems, [], 'no uncaught errors on any page')
  })
})
