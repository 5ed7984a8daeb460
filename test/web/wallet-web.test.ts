/**
 * The wallet that does not trust its peer, end to end: a real peer (a process on loopback) and
 * headless Chromium. A page on the honest peer shows its balance and asset "verified at height H"
 * (checked in the browser against the validators' commit); a page that reaches the same peer
 * through a lying proxy (test-only, below: it changes the balance in every account proof it
 * passes on) shows "this peer's answer does not check" with the named error.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { createServer, request, type Server } from 'node:http'
import { connect, type AddressInfo } from 'node:net'
import * as dagCbor from '@ipld/dag-cbor'
import { chromium, type Browser, type Page } from 'playwright-core'
import { PeerSet, type CliPeer } from '../helpers/cli-peer.ts'
import { cappedPage } from '../helpers/frame-rate.ts'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const set = new PeerSet()

interface Ready { url: string }
interface Check { verified: boolean, height: number | null, error?: string, message?: string }

/** Adds `more` to the balance in an account proof's value: a peer that says we hold more than we do. */
function lieAboutBalance (body: Buffer, more: bigint): Buffer {
  const answer = JSON.parse(body.toString()) as { proof?: { key?: string, present?: { value: string } } }
  const present = answer.proof?.present
  if (present == null || answer.proof?.key?.startsWith('account/') !== true) return body
  const [balance, nonce, stake] = dagCbor.decode(Buffer.from(present.value, 'hex')) as [number | bigint, number, number | bigint]
  present.value = Buffer.from(dagCbor.encode([BigInt(balance) + more, nonce, stake])).toString('hex')
  return Buffer.from(JSON.stringify(answer))
}

/** Gives a validator set with the validators' powers doubled: a peer that says another set signed. */
function lieAboutValidators (body: Buffer): Buffer {
  const answer = JSON.parse(body.toString()) as { validators: Array<{ id: string, power: number }> }
  answer.validators = answer.validators.map(v => ({ ...v, power: v.power * 2 }))
  return Buffer.from(JSON.stringify(answer))
}

/**
 * A proxy in front of a peer's API (requests and the event WebSocket), naming the peer in Host and
 * Origin, that changes the proofs it passes on. Test-only.
 */
async function lyingProxy (target: URL, path: string, lie: (body: Buffer) => Buffer): Promise<{ server: Server, port: number, lies: () => number }> {
  let port = 0
  let lies = 0
  const rewrite = (headers: Record<string, string | string[] | undefined>): Record<string, string | string[] | undefined> => ({
    ...headers,
    host: target.host,
    ...(headers.origin != null ? { origin: target.origin } : {})
  })
  const server = createServer((req, res) => {
    const up = request({ host: target.hostname, port: target.port, path: req.url, method: req.method, headers: rewrite(req.headers) }, r => {
      if (!(req.url ?? '').startsWith(path) || r.statusCode !== 200) {
        res.writeHead(r.statusCode ?? 502, r.headers)
        r.pipe(res)
        return
      }
      const chunks: Buffer[] = []
      r.on('data', (c: Buffer) => chunks.push(c))
      r.on('end', () => {
        const out = lie(Buffer.concat(chunks))
        lies++
        res.writeHead(200, { ...r.headers, 'content-length': String(out.length) })
        res.end(out)
      })
    })
    up.on('error', () => { res.destroy() })
    req.pipe(up)
  })
  server.on('upgrade', (req, socket, head) => {
    const s = connect(Number(target.port), target.hostname, () => {
      const headers = rewrite(req.headers)
      const lines = [`${req.method} ${req.url} HTTP/1.1`, ...Object.entries(headers).flatMap(([k, v]) => (Array.isArray(v) ? v : v == null ? [] : [v]).map(x => `${k}: ${x}`))]
      s.write(lines.join('\r\n') + '\r\n\r\n')
      s.write(head)
      socket.pipe(s).pipe(socket)
    })
    s.on('error', () => { socket.destroy() })
    socket.on('error', () => { s.destroy() })
  })
  await new Promise<void>(resolve => { server.listen(0, '127.0.0.1', resolve) })
  port = (server.address() as AddressInfo).port
  return { server, port, lies: () => lies }
}

describe('the wallet verifies what its peer says', { timeout: 180_000, skip: existsSync(CHROMIUM) ? false : `no Chromium at ${CHROMIUM}` }, () => {
  let a: CliPeer
  let browser: Browser
  let proxy: Awaited<ReturnType<typeof lyingProxy>>
  let setProxy: Awaited<ReturnType<typeof lyingProxy>>
  const problems: string[] = []
  const pages: Page[] = []

  before(async () => {
    a = await set.start()
    proxy = await lyingProxy(new URL((a.ready as unknown as Ready).url), '/api/v0/ledger/proof', b => lieAboutBalance(b, 1_000_000n))
    setProxy = await lyingProxy(new URL((a.ready as unknown as Ready).url), '/api/v0/ledger/validators/', lieAboutValidators)
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--use-angle=swiftshader', '--enable-unsafe-swiftshader']
    })
  })

  after(async () => {
    await browser?.close()
    for (const p of [proxy, setProxy]) {
      if (p == null) continue
      await new Promise<void>(resolve => { p.server.close(() => { resolve() }); p.server.closeAllConnections() })
    }
    await set.cleanup()
  })

  /** The failure a page through `p` shows: the hook's state and the wallet's line. */
  async function failure (p: { port: number }): Promise<{ check: Check, line: string, state: string | null }> {
    const url = new URL((a.ready as unknown as Ready).url)
    url.port = String(p.port)
    const page = await open(url.toString())
    await page.waitForFunction(() => (window as any).peerverse?.wallet().error != null, null, { timeout: 60_000 })
    const check = await page.evaluate(() => (window as any).peerverse.wallet()) as Check
    const line = page.locator('#wallet-verify')
    return { check, line: await line.innerText(), state: await line.getAttribute('data-state') }
  }

  async function open (url: string): Promise<Page> {
    const page = await cappedPage(browser, { viewport: { width: 1280, height: 800 } })
    page.on('pageerror', err => { problems.push(err.message) })
    pages.push(page)
    await page.goto(url)
    return page
  }

  it('a page on an honest peer shows its balance and asset verified at a height', async () => {
    const minted = await a.api.request<{ id: string }>('POST', '/api/v0/ledger/asset/mint', { content: 'bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy', name: 'statue' })
    const page = await open((a.ready as unknown as Ready).url)
    await page.waitForFunction(() => document.querySelectorAll('#assets [data-asset]').length > 0 && (window as any).peerverse?.wallet().verified === true, null, { timeout: 60_000 })
    const check = await page.evaluate(() => (window as any).peerverse.wallet()) as Check
    assert.equal(check.verified, true)
    assert.ok(check.height != null && check.height >= 1, `height ${check.height}`)
    assert.match(await page.locator('#wallet-verify').innerText(), /verified at height \d+/)
    const { balance } = await a.api.request<{ balance: string }>('GET', '/api/v0/ledger/balance/')
    assert.ok(BigInt(balance) > 0n)
    assert.ok(minted.id.length > 0)
    assert.deepEqual(problems, [])
  })

  it('a page on a peer whose proof does not check shows the failure with its named error', async () => {
    const { check, line, state } = await failure(proxy)
    assert.equal(check.verified, false)
    assert.equal(check.error, 'InvalidProofError')
    assert.equal(check.height, null)
    assert.ok(proxy.lies() > 0)
    assert.match(line, /this peer's answer does not check: InvalidProofError/)
    assert.equal(state, 'failed')
    assert.deepEqual(problems, [])
  })

  it('a page on a peer that names another validator set shows InvalidCommitError', async () => {
    const { check, line } = await failure(setProxy)
    assert.equal(check.verified, false)
    assert.equal(check.error, 'InvalidCommitError')
    assert.ok(setProxy.lies() > 0)
    assert.match(line, /this peer's answer does not check: InvalidCommitError/)
    assert.deepEqual(problems, [])
  })
})
