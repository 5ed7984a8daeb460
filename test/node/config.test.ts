import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import { defaultConfig, isLoopbackHost, loadConfig, MAX_JOIN_TIMEOUT_MS, mergeConfig, MIN_JOIN_TIMEOUT_MS, parseHostPort, validateConfig } from '../../src/node/config.ts'

const PEER = '12D3KooWHA2LP2mTvhM1oESTY8J2ed6VB5tx4T83Go7E9ECAXYoq'

describe('config', () => {
  it('defaults listen on TCP and WebSocket and keep the API on loopback', () => {
    const c = validateConfig(defaultConfig('/tmp/x'))
    assert.ok(c.listen.some(a => /\/tcp\/\d+$/.test(a)))
    assert.ok(c.listen.some(a => a.endsWith('/ws')))
    // WebRTC by default; relay slots are taken by reachability, not by a default listen address.
    assert.ok(c.listen.includes('/webrtc') && !c.listen.includes('/p2p-circuit'))
    assert.deepEqual(c.nat, { webrtc: true, stun: true, reachability: 'auto' })
    assert.equal(parseHostPort(c.api as string).host, '127.0.0.1')
  })

  it('layers defaults < file < flags, arrays replacing arrays', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'peerverse-cfg-'))
    try {
      await writeFile(join(dir, 'config.json'), JSON.stringify({ bootstrap: [`/ip4/127.0.0.1/tcp/1/p2p/${PEER}`], dht: { mode: 'client' } }))
      const fromFile = await loadConfig(dir)
      assert.deepEqual(fromFile.bootstrap, [`/ip4/127.0.0.1/tcp/1/p2p/${PEER}`])
      assert.equal(fromFile.dht.mode, 'client')
      assert.equal(fromFile.relay.server, true)
      const withFlags = await loadConfig(dir, { bootstrap: [], dht: { mode: undefined }, api: '127.0.0.1:0' })
      assert.deepEqual(withFlags.bootstrap, [])
      assert.equal(withFlags.dht.mode, 'client', 'an undefined flag does not erase the file value')
      assert.equal(withFlags.api, '127.0.0.1:0')
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('refuses bad files and values with ConfigError naming the field', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'peerverse-cfg-'))
    try {
      await writeFile(join(dir, 'config.json'), '{ not json')
      await assert.rejects(loadConfig(dir), { name: 'ConfigError', message: /not valid JSON/ })
      await writeFile(join(dir, 'config.json'), '{"lisen": []}')
      await assert.rejects(loadConfig(dir), { name: 'ConfigError', message: /unknown setting "lisen"/ })
      await writeFile(join(dir, 'config.json'), '[]')
      await assert.rejects(loadConfig(dir), { name: 'ConfigError' })
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
    const base = defaultConfig('/tmp/x')
    const bad: Array<[object, RegExp]> = [
      [{ listen: ['not-a-multiaddr'] }, /listen/],
      [{ listen: '/ip4/1.2.3.4/tcp/1' }, /listen/],
      [{ bootstrap: ['/ip4/127.0.0.1/tcp/1'] }, /bootstrap.*p2p/],
      [{ api: 'localhost' }, /api/],
      [{ api: '127.0.0.1:70000' }, /api/],
      [{ api: '0.0.0.0:7400' }, /api: 0\.0\.0\.0 is not a loopback/],
      [{ api: '[::]:7400' }, /api: :: is not a loopback/],
      [{ api: 'localhost:7400' }, /api: localhost is not a loopback/],
      [{ api: '127.0.0.256:7400' }, /not a loopback/],
      [{ api: '192.168.1.2:7400' }, /not a loopback/],
      [{ dht: { mode: 'always' } }, /dht.mode/],
      [{ nat: { webrtc: 'yes' } }, /nat.webrtc/],
      [{ nat: { stun: 1 } }, /nat.stun/],
      [{ nat: { reachability: 'open' } }, /nat.reachability/],
      [{ relay: { server: 'yes' } }, /relay.server/],
      [{ ledger: { joinTimeoutMs: MIN_JOIN_TIMEOUT_MS - 1 } }, /ledger.joinTimeoutMs/],
      [{ ledger: { joinTimeoutMs: MAX_JOIN_TIMEOUT_MS + 1 } }, /ledger.joinTimeoutMs/],
      [{ ledger: { joinTimeoutMs: 1500.5 } }, /ledger.joinTimeoutMs/]
    ]
    assert.equal(validateConfig(mergeConfig(base, { ledger: { joinTimeoutMs: MIN_JOIN_TIMEOUT_MS } })).ledger.joinTimeoutMs, MIN_JOIN_TIMEOUT_MS)
    for (const [layer, message] of bad) {
      assert.throws(() => validateConfig(mergeConfig(base, layer as never)), { name: 'ConfigError', message }, JSON.stringify(layer))
    }
  })

  it('parses host:port, IPv6 in brackets (property over ports)', () => {
    assert.deepEqual(parseHostPort('[::1]:80'), { host: '::1', port: 80 })
    fc.assert(fc.property(fc.integer({ min: 0, max: 65535 }), port => {
      assert.deepEqual(parseHostPort(`127.0.0.1:${port}`), { host: '127.0.0.1', port })
    }), { seed: 1, numRuns: 100 })
    assert.throws(() => parseHostPort('127.0.0.1:65536'), { name: 'ConfigError' })
    for (const host of ['127.0.0.1', '127.1.2.3', '::1']) assert.equal(isLoopbackHost(host), true, host)
    for (const host of ['0.0.0.0', '::', 'localhost', '128.0.0.1', '127.0.0.1.5', '::ffff:127.0.0.1']) assert.equal(isLoopbackHost(host), false, host)
  })
})
