/**
 * Peers on one LAN find each other with nothing configured (mDNS). The LAN is made here: two
 * network namespaces, each with a veth into a bridge in a third, addresses in 10.77.0.0/24 and a
 * multicast route. Two `peerverse start` processes with default settings and no bootstrap run
 * inside them (mDNS multicasts only there, never on the host's own interfaces), and each must
 * come to list the other among its peers. The API of each listens on its namespace's own
 * loopback, so the test asks it through `ip netns exec NS peerverse peers`.
 * Needs root and iproute2; skipped with a message otherwise. The namespaces are always deleted.
 */
import { describe, it, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { promisify } from 'node:util'
import { CLI, waitFor, type ReadyLine } from '../helpers/cli-peer.ts'
import { cleanups, tempDir } from '../helpers/cleanup.ts'

const run = promisify(execFile)

async function ip (...args: string[]): Promise<void> {
  await run('ip', args)
}

/** Makes the LAN; returns the two peers' namespaces. Every namespace made is handed to `defer`. */
async function makeLan (defer: (fn: () => Promise<unknown>) => void, tag: string): Promise<[string, string]> {
  const bridge = `pvbr-${tag}`
  const a = `pva-${tag}`
  const b = `pvb-${tag}`
  for (const ns of [bridge, a, b]) {
    await ip('netns', 'add', ns)
    defer(async () => ip('netns', 'del', ns))
    await ip('-n', ns, 'link', 'set', 'lo', 'up')
  }
  await ip('-n', bridge, 'link', 'add', 'br0', 'type', 'bridge')
  await ip('-n', bridge, 'link', 'set', 'br0', 'up')
  for (const [i, ns] of [a, b].entries()) {
    const port = `v${i}`
    await ip('-n', bridge, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns)
    await ip('-n', bridge, 'link', 'set', port, 'master', 'br0')
    await ip('-n', bridge, 'link', 'set', port, 'up')
    await ip('-n', ns, 'addr', 'add', `10.77.0.${i + 1}/24`, 'dev', 'eth0')
    await ip('-n', ns, 'link', 'set', 'eth0', 'up')
    // No default route in the namespace: multicast needs a route of its own.
    await ip('-n', ns, 'route', 'add', '224.0.0.0/4', 'dev', 'eth0')
  }
  return [a, b]
}

/** `peerverse start` inside `ns` with default settings (mDNS on), listening on `address`; resolves with its ready line. */
async function startIn (defer: (fn: () => Promise<unknown>) => void, ns: string, dataDir: string, address: string): Promise<{ proc: ChildProcess, ready: ReadyLine }> {
  const proc = spawn('ip', ['netns', 'exec', ns, process.execPath, CLI, 'start', '--data', dataDir,
    '--listen', `/ip4/${address}/tcp/0`, '--api', '127.0.0.1:0', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] })
  defer(async () => {
    if (proc.exitCode != null || proc.signalCode != null) return
    const exited = once(proc, 'exit')
    proc.kill('SIGKILL')
    await exited
  })
  let stderr = ''
  proc.stderr!.on('data', d => { stderr += d })
  const ready = await new Promise<ReadyLine>((resolve, reject) => {
    let buf = ''
    proc.stdout!.on('data', (d: Buffer) => {
      buf += d.toString()
      const nl = buf.indexOf('\n')
      if (nl >= 0) {
        try { resolve(JSON.parse(buf.slice(0, nl))) } catch (err) { reject(err) }
      }
    })
    proc.once('exit', code => { reject(new Error(`peer in ${ns} exited with ${code} before ready: ${stderr}`)) })
  })
  return { proc, ready }
}

/** The peer ids `peerverse peers` lists for the peer on `dataDir` in `ns`. */
async function peersIn (ns: string, dataDir: string): Promise<string[]> {
  const { stdout } = await run('ip', ['netns', 'exec', ns, process.execPath, CLI, 'peers', '--data', dataDir, '--json'])
  return (JSON.parse(stdout) as Array<{ peerId: string }>).map(p => p.peerId)
}

async function statusIn (ns: string, dataDir: string): Promise<{ mdns: boolean }> {
  const { stdout } = await run('ip', ['netns', 'exec', ns, process.execPath, CLI, 'status', '--data', dataDir, '--json'])
  return JSON.parse(stdout)
}

/** Whether this process may make network namespaces; the reason when not. */
async function cannotMakeNamespaces (): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'needs root to make network namespaces'
  try {
    await run('ip', ['-V'])
  } catch {
    return 'needs iproute2 (`ip`)'
  }
  return undefined
}

describe('mDNS on a LAN of two network namespaces', { timeout: 300_000 }, () => {
  it('two default peers with no bootstrap find each other and list each other among their peers', async (t: TestContext) => {
    const why = await cannotMakeNamespaces()
    if (why != null) return t.skip(why)
    const defer = cleanups(t)
    // Names of this run's own, apart from any other run's on the machine.
    const tag = String(process.pid)
    let namespaces: [string, string]
    try {
      namespaces = await makeLan(defer, tag)
    } catch (err) {
      return t.skip(`cannot make network namespaces here: ${(err as Error).message}`)
    }
    const [nsA, nsB] = namespaces
    const dirA = await tempDir(defer, 'mdns-a')
    const dirB = await tempDir(defer, 'mdns-b')
    const a = await startIn(defer, nsA, dirA, '10.77.0.1')
    const b = await startIn(defer, nsB, dirB, '10.77.0.2')
    assert.equal((await statusIn(nsA, dirA)).mdns, true)

    await waitFor('each peer lists the other', async () => {
      const [ofA, ofB] = await Promise.all([peersIn(nsA, dirA), peersIn(nsB, dirB)])
      return ofA.includes(b.ready.peerId) && ofB.includes(a.ready.peerId)
    }, 90_000, 1_000)
  })
})
