/**
 * The network-namespace testbed: its NATs behave as named (mapping per destination, filtering of
 * unsolicited packets, no path between homes), its link caps hold, and destroy leaves nothing.
 * Skips with the reason where this machine cannot make namespaces.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { Testbed, TestbedError, MAX_PUBLIC_HOSTS, MAX_HOSTS_PER_HOME, testbedUnavailable, cleanStaleTestbeds, type TbHost } from '../../testbed/testbed.ts'
import { cleanups } from '../helpers/cleanup.ts'
import { waitFor } from '../helpers/cli-peer.ts'

const PROBE = join(import.meta.dirname, '../../testbed/probe.ts')
const ECHO_PORT = 7000
const AGENT_PORT = 40000

/** A probe process whose JSON lines are collected; resolves once it prints `ready`. */
async function probe (host: TbHost, args: string[]): Promise<{ proc: ChildProcess, lines: Array<Record<string, string>> }> {
  const proc = host.spawn([process.execPath, PROBE, ...args], { stdin: args[0] === 'agent' })
  const lines: Array<Record<string, string>> = []
  let stderr = ''
  proc.stderr!.on('data', d => { stderr += d })
  await new Promise<void>((resolve, reject) => {
    createInterface({ input: proc.stdout! }).on('line', line => {
      if (line === 'ready') resolve()
      else lines.push(JSON.parse(line))
    })
    proc.once('exit', code => { reject(new Error(`probe exited ${String(code)}: ${stderr}`)) })
  })
  return { proc, lines }
}

function namespaces (): string[] {
  return execFileSync('ip', ['netns', 'list']).toString().split('\n').map(l => l.split(' ')[0]).filter(Boolean)
}

async function natBehaviour (t: import('node:test').TestContext, nat: 'cone' | 'symmetric'): Promise<void> {
  const reason = await testbedUnavailable()
  if (reason != null) { t.skip(reason); return }
  const defer = cleanups(t)
  const tb = await Testbed.create({ publicHosts: 3, homes: [{ name: 'a', nat, hosts: 1 }, { name: 'b', nat: 'cone', hosts: 1 }] })
  defer(async () => { await tb.destroy() })
  const [x, y, z] = tb.internet
  const home = tb.homes[0]
  const h = home.hosts[0]
  await probe(x, ['echo', String(ECHO_PORT)])
  await probe(y, ['echo', String(ECHO_PORT)])
  const agent = await probe(h, ['agent', String(AGENT_PORT)])
  const say = (line: string): void => { agent.proc.stdin!.write(line + '\n') }

  // UDP: the external address seen by two different internet hosts.
  say(`udp ${x.ip} ${ECHO_PORT} one`)
  say(`udp ${y.ip} ${ECHO_PORT} two`)
  const echoes = await waitFor('two UDP echoes', () => { const e = agent.lines.filter(l => l.seen != null && l.tcp == null); return e.length === 2 && e }, 10_000, 20)
  const seenX = echoes.find(e => e.from.startsWith(x.ip))!.seen
  const seenY = echoes.find(e => e.from.startsWith(y.ip))!.seen
  assert.equal(seenX.split(':')[0], home.router.ip, 'the NAT rewrites to its WAN address')
  if (nat === 'cone') {
    assert.equal(seenX, seenY, 'cone: one external port for every destination')
    assert.equal(seenX, `${home.router.ip}:${AGENT_PORT}`, 'cone: the source port is kept')
  } else {
    assert.notEqual(seenX, seenY, 'symmetric: a new external port per destination')
  }

  // TCP from the same local port: the same mapping rule.
  say(`tcp ${x.ip} ${ECHO_PORT}`)
  await waitFor('first TCP answer', () => agent.lines.some(l => l.tcp != null), 10_000, 20)
  say(`tcp ${y.ip} ${ECHO_PORT}`)
  const tcp = await waitFor('two TCP answers', () => { const e = agent.lines.filter(l => l.tcp != null); return e.length === 2 && e }, 10_000, 20)
  assert.ok(tcp.every(l => l.error == null), JSON.stringify(tcp))
  if (nat === 'cone') assert.equal(tcp[0].seen, tcp[1].seen)
  else assert.notEqual(tcp[0].seen, tcp[1].seen)

  // Unsolicited: z, never contacted, sends to the mapping x uses and to the router's bare port;
  // then x answers once more. Only x's answer gets in.
  const [, mappedPort] = seenX.split(':')
  for (const port of [mappedPort, String(AGENT_PORT)]) {
    const r = await z.run([process.execPath, PROBE, 'send', home.router.ip, port, 'intruder'])
    assert.equal(r.code, 0, r.stderr)
  }
  say(`udp ${x.ip} ${ECHO_PORT} last`)
  await waitFor('the last echo', () => agent.lines.some(l => l.text === 'last'), 10_000, 20)
  assert.ok(!agent.lines.some(l => l.text === 'intruder'), 'no unsolicited packet reaches a home host')

  // No path between homes' private ranges: only through the NATs.
  const other = tb.homes[1].hosts[0]
  await probe(other, ['echo', String(ECHO_PORT)])
  say(`tcp ${other.ip} ${ECHO_PORT}`)
  const cross = await waitFor('the cross-home TCP attempt', () => agent.lines.find(l => l.tcp === `${other.ip}:${ECHO_PORT}`), 30_000, 20)
  assert.ok(cross.error != null, `a home reached another home's private address: ${JSON.stringify(cross)}`)
}

test('a cone NAT keeps one external port for every destination and lets in only replies', async t => { await natBehaviour(t, 'cone') })

test('a symmetric NAT maps each destination to its own external port', async t => { await natBehaviour(t, 'symmetric') })

test('capEgress puts a tbf at the rate on the uplink, and the rate holds', async t => {
  const reason = await testbedUnavailable()
  if (reason != null) { t.skip(reason); return }
  const defer = cleanups(t)
  const cap = 2 * 1024 * 1024
  const tb = await Testbed.create({ publicHosts: 2, homes: [{ name: 'a', nat: 'cone', hosts: 1, uplinkBytesPerSecond: cap }] })
  defer(async () => { await tb.destroy() })
  const [src, dst] = tb.internet
  await src.capEgress(cap)
  for (const h of [src, tb.homes[0].router]) {
    const qd = JSON.parse(execFileSync('tc', ['-n', h.ns, '-j', 'qdisc', 'show', 'dev', h.link]).toString()) as Array<{ kind: string, options?: { rate?: number } }>
    const tbf = qd.find(q => q.kind === 'tbf')
    assert.ok(tbf != null, `no tbf on ${h.name}: ${JSON.stringify(qd)}`)
    assert.equal(tbf.options?.rate, cap, 'tc rate in bytes per second')
  }
  const sink = await probe(dst, ['sink', String(ECHO_PORT)])
  const r = await src.run([process.execPath, PROBE, 'source', dst.ip, String(ECHO_PORT), String(3 * cap)])
  assert.equal(r.code, 0, r.stderr)
  const got = await waitFor('the sink total', () => sink.lines.find(l => l.bytes != null), 10_000, 20)
  const rate = Number(got.bytes) / (Number(got.ms) / 1000)
  assert.equal(Number(got.bytes), 3 * cap)
  assert.ok(rate < 2 * cap, `rate ${rate} B/s is not below twice the cap ${cap}`)
  await src.capEgress(0)
  const after = execFileSync('tc', ['-n', src.ns, 'qdisc', 'show', 'dev', src.link]).toString()
  assert.ok(!after.includes('tbf'), after)
})

test('destroy removes every namespace, even with a child left running, and is idempotent', async t => {
  const reason = await testbedUnavailable()
  if (reason != null) { t.skip(reason); return }
  const tb = await Testbed.create({ publicHosts: 1, homes: [{ name: 'a', nat: 'symmetric', hosts: 2 }] })
  t.after(async () => { await tb.destroy() })
  const ours = (): string[] => namespaces().filter(n => n.startsWith(tb.prefix))
  assert.equal(ours().length, 1 + 1 + 1 + 2, 'internet, one host, a router and two home hosts')
  const child = tb.homes[0].hosts[1].spawn(['sleep', '600'])
  await probe(tb.internet[0], ['echo', String(ECHO_PORT)])
  await tb.destroy()
  await tb.destroy()
  assert.deepEqual(ours(), [])
  await waitFor('the child to be gone', () => child.exitCode != null || child.signalCode != null, 10_000, 20)
  assert.deepEqual(await cleanStaleTestbeds(), [])
})

test('a spec past the limits or with an unknown NAT is refused with TestbedError before anything is built', async () => {
  const ours = (): string[] => namespaces().filter(n => n.startsWith(`pv${process.pid.toString(36).padStart(5, '0').slice(-5)}`))
  const before = ours().length
  await assert.rejects(Testbed.create({ publicHosts: MAX_PUBLIC_HOSTS + 1, homes: [] }), { name: 'TestbedError' })
  await assert.rejects(Testbed.create({ publicHosts: 1, homes: [{ name: 'a', nat: 'cone', hosts: MAX_HOSTS_PER_HOME + 1 }] }), { name: 'TestbedError' })
  await assert.rejects(Testbed.create({ publicHosts: 1, homes: [{ name: 'a', nat: 'full' as 'cone', hosts: 1 }] }), TestbedError)
  assert.equal(ours().length, before)
})

test('cleanStaleTestbeds removes what a run killed with SIGKILL left behind', async t => {
  const reason = await testbedUnavailable()
  if (reason != null) { t.skip(reason); return }
  const lib = join(import.meta.dirname, '../../testbed/testbed.ts')
  const child = spawn(process.execPath, ['--input-type=module', '-e',
    `import { Testbed } from ${JSON.stringify(lib)}; const tb = await Testbed.create({ publicHosts: 1, homes: [{ name: 'a', nat: 'cone', hosts: 1 }] }); console.log(tb.prefix); setInterval(() => {}, 1 << 30)`],
  { stdio: ['ignore', 'pipe', 'inherit'] })
  t.after(() => { child.kill('SIGKILL') })
  const prefix = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout }).once('line', resolve)
    child.once('exit', code => { reject(new Error(`the run exited with ${String(code)}`)) })
  })
  const gone = once(child, 'exit')
  child.kill('SIGKILL')
  await gone
  const left = namespaces().filter(n => n.startsWith(prefix))
  assert.equal(left.length, 4, 'a killed run leaves its namespaces')
  const removed = await cleanStaleTestbeds()
  assert.deepEqual(removed.filter(n => n.startsWith(prefix)).sort(), left.sort())
  assert.deepEqual(namespaces().filter(n => n.startsWith(prefix)), [])
})
