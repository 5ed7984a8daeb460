/**
 * A network has one name, and no silent forks, with real `peerverse start` processes on
 * 127.0.0.1: a peer joins with only another's join code, follows its chain, is paid and sees it,
 * and rejoins it on a plain restart; a fresh peer told only a bootstrap follows that peer's chain;
 * a peer on a devnet of its own told a bootstrap on another chain says so and keeps its chain;
 * bad join codes are refused with named errors and change nothing on disk.
 */
import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { PeerSet, runCli, waitFor, type CliPeer } from '../helpers/cli-peer.ts'
import type { NodeStatus } from '../../src/node/node.ts'
import { JOIN_TIMEOUT_MS, NETWORK_FILE } from '../../src/node/join.ts'
import { CONFIG_FILE, MIN_JOIN_TIMEOUT_MS } from '../../src/node/config.ts'
import { parseLink } from '../../src/net/links.ts'

const set = new PeerSet()

async function status (p: CliPeer): Promise<NodeStatus> {
  return await p.api.request<NodeStatus>('GET', '/api/v0/status')
}

async function balance (p: CliPeer): Promise<bigint> {
  return BigInt((await p.api.request<{ balance: string }>('GET', '/api/v0/ledger/balance/')).balance)
}

async function invite (p: CliPeer): Promise<{ code: string, link: string }> {
  const r = await runCli(['invite', '--data', p.dataDir, '--json'])
  assert.equal(r.code, 0, r.stderr)
  return JSON.parse(r.stdout)
}

describe('joining a network', { timeout: 300_000 }, () => {
  after(async () => { await set.cleanup() })

  let a: CliPeer
  let aNet: NodeStatus['network']

  it('B starts with only A\'s join code, follows A\'s chain, is paid by A, and is still on it after a plain restart', async () => {
    a = await set.start({ devnet: false })
    aNet = (await status(a)).network
    assert.equal(aNet.devnet, true, 'a peer alone runs a devnet of its own')
    assert.match(aNet.genesis, /^b/)
    // The network's name is the genesis file's CID as `peerverse add` gives it.
    const genesisBytes = await readFile(join(a.dataDir, 'genesis.json'))
    const { code, link } = await invite(a)
    const parsed = parseLink(code)
    assert.equal(parsed.kind, 'join')
    assert.equal(parsed.target, aNet.genesis)
    assert.ok(parsed.peers.includes(a.addr), `the code carries A's address: ${code}`)
    assert.equal(parseLink(link).target, aNet.genesis)

    const b = await set.start({ devnet: false, extra: ['--join', code] })
    const bNet = (await status(b)).network
    assert.equal(bNet.genesis, aNet.genesis)
    assert.equal(bNet.chain, aNet.chain)
    assert.equal(bNet.devnet, false)
    assert.deepEqual(await readFile(join(b.dataDir, 'genesis.json')), genesisBytes, 'the genesis is written with its exact bytes')
    await waitFor('B counts A on its chain', async () => (await status(b)).network.peersOnChain >= 1, 30_000)

    const r = await runCli(['pay', b.ready.did, '777', '--data', a.dataDir, '--json'])
    assert.equal(r.code, 0, r.stderr)
    assert.equal(JSON.parse(r.stdout).status, 'committed')
    await waitFor('B sees the payment', async () => await balance(b) === 777n, 30_000)

    // Restarted plainly (no --join, no --bootstrap): the remembered network.
    assert.equal(await set.stop(b), 0)
    const again = await set.start({ dataDir: b.dataDir, devnet: false })
    const s = await status(again)
    assert.equal(s.network.genesis, aNet.genesis)
    assert.equal(s.network.devnet, false)
    await waitFor('B reconnects to A and keeps its balance', async () => (await status(again)).network.peersOnChain >= 1 && await balance(again) === 777n, 30_000)
    const remembered = JSON.parse(await readFile(join(b.dataDir, NETWORK_FILE), 'utf8'))
    assert.equal(remembered.genesis, aNet.genesis)
    // The status command prints the network.
    const printed = await runCli(['status', '--data', b.dataDir])
    assert.equal(printed.code, 0, printed.stderr)
    assert.match(printed.stdout, new RegExp(`network: +${aNet.genesis} \\(chain ${aNet.chain}\\)`))
  })

  it('a fresh peer given only --bootstrap A follows A\'s chain', async () => {
    const c = await set.start({ devnet: false, bootstrap: [a.addr] })
    const s = await status(c)
    assert.equal(s.network.genesis, aNet.genesis)
    assert.equal(s.network.chain, aNet.chain)
    await waitFor('C follows the chain', async () => (await c.api.request<{ height: number }>('GET', '/api/v0/ledger/status')).height >= 2, 30_000)
  })

  it('a peer on a devnet of its own restarted with a bootstrap on another chain prints one clear line and keeps its chain; asked through the API, it joins', async () => {
    const d = await set.start({ devnet: false })
    const own = (await status(d)).network
    assert.notEqual(own.genesis, aNet.genesis)
    assert.equal(await set.stop(d), 0)
    const again = await set.start({ dataDir: d.dataDir, devnet: false, bootstrap: [a.addr] })
    await waitFor('the mismatch line', () => /network mismatch/.test(again.stderr()), 30_000)
    const line = again.stderr().split('\n').find(l => /network mismatch/.test(l)) ?? ''
    assert.ok(line.includes(own.chain) && line.includes(aNet.chain) && line.includes('--join'), line)
    const s = await status(again)
    assert.equal(s.network.genesis, own.genesis, 'it stays on its own chain')
    assert.equal(s.network.peersOnOtherChains, 1)
    assert.equal(s.network.peersOnChain, 0)
    await assert.rejects(readFile(join(d.dataDir, NETWORK_FILE)), { code: 'ENOENT' })

    // Through the API (the browser's way): a peer on its own devnet joins A's network at once.
    const { code } = await invite(a)
    const joined = await again.api.request<{ genesis: string, chain: string, switched: boolean }>('POST', '/api/v0/network/join', { link: code })
    assert.deepEqual(joined, { genesis: aNet.genesis, chain: aNet.chain, switched: true })
    const after = await status(again)
    assert.equal(after.network.genesis, aNet.genesis)
    assert.equal(after.network.devnet, false)
    const r = await runCli(['pay', again.ready.did, '55', '--data', a.dataDir, '--json'])
    assert.equal(r.code, 0, r.stderr)
    await waitFor('the switched peer sees the payment', async () => await balance(again) === 55n, 30_000)
    // Now it follows a network: another one is refused with 409.
    const res = await again.api.raw('POST', '/api/v0/network/join', { body: JSON.stringify({ link: `pv:join=${own.genesis}&peer=${encodeURIComponent(a.addr)}` }), headers: { 'content-type': 'application/json' } })
    assert.equal(res.status, 409)
    assert.equal((await res.json() as { error: string }).error, 'NetworkMismatchError')
    // The CLI's join says the same; the same code again is no change.
    const cli = await runCli(['join', `pv:join=${own.genesis}&peer=${encodeURIComponent(a.addr)}`, '--data', again.dataDir])
    assert.equal(cli.code, 1)
    assert.match(cli.stderr, /NetworkMismatchError|follows network/)
    const same = await runCli(['join', code, '--data', again.dataDir, '--json'])
    assert.equal(same.code, 0, same.stderr)
    assert.deepEqual(JSON.parse(same.stdout), { genesis: aNet.genesis, chain: aNet.chain, switched: false })
  })

  it('refuses a malformed join code with InvalidLinkError and writes nothing', async () => {
    // Each code on its own fresh data dir, side by side.
    await Promise.all(['pv:join=notacid&peer=' + encodeURIComponent(a.addr), 'pv:space=abc&peer=' + encodeURIComponent(a.addr), 'pv:join=' + aNet.genesis, 'garbage'].map(async bad => {
      const dir = await set.tempDir()
      const r = await runCli(['start', '--data', dir, '--api', '127.0.0.1:0', '--listen', '/ip4/127.0.0.1/tcp/0', '--no-mdns', '--join', bad])
      assert.equal(r.code, 1, r.stderr)
      assert.match(r.stderr, /join|link|peer/i, bad)
      assert.deepEqual(await readdir(dir), [], `nothing written for ${bad}`)
    }))
  })

  it('gives up on a code whose peers are unreachable with a JoinError naming them, and remembers nothing', async () => {
    const dead = a.addr.replace(/\/tcp\/\d+/, '/tcp/1')
    const code = `pv:join=${aNet.genesis}&peer=${encodeURIComponent(dead)}`
    const dir = await set.tempDir()
    // The deadline is a setting (ledger.joinTimeoutMs, default JOIN_TIMEOUT_MS); a short one keeps the test short.
    const deadline = MIN_JOIN_TIMEOUT_MS * 3
    assert.ok(deadline < JOIN_TIMEOUT_MS)
    await writeFile(join(dir, CONFIG_FILE), JSON.stringify({ ledger: { joinTimeoutMs: deadline } }))
    const r = await runCli(['start', '--data', dir, '--api', '127.0.0.1:0', '--listen', '/ip4/127.0.0.1/tcp/0', '--no-mdns', '--join', code])
    assert.equal(r.code, 1, r.stderr)
    assert.match(r.stderr, new RegExp(`no peer of the code answered within ${deadline} ms; tried ${dead.replace(/[/.]/g, '\\$&')}`))
    const files = await readdir(dir)
    assert.ok(!files.includes('genesis.json') && !files.includes(NETWORK_FILE), files.join(' '))
  })
})
