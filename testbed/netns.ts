/**
 * Node-only. The testbed's low-level steps: `ip`, `nft`, `tc` and `sysctl`, each run with execFile
 * and a checked exit code. A failing step throws TestbedError naming the command and its stderr,
 * so a broken build says which step broke and why. Synchronous twins exist only for teardown from
 * a process `exit` handler, where nothing asynchronous runs.
 */
import { execFile, execFileSync } from 'node:child_process'

export class TestbedError extends Error {
  name = 'TestbedError'
}

/** How long one low-level step may take before it counts as failed. */
export const STEP_TIMEOUT_MS = 20_000

/** Runs `cmd args...`; resolves stdout, or throws TestbedError with the command line and stderr. */
export async function sh (cmd: string, args: string[], options: { input?: string } = {}): Promise<string> {
  return await new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { timeout: STEP_TIMEOUT_MS, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err != null) {
        reject(new TestbedError(`${[cmd, ...args].join(' ')} failed (${(err as NodeJS.ErrnoException).code ?? err.message}): ${String(stderr).trim() || err.message}`))
        return
      }
      resolve(String(stdout))
    })
    if (options.input != null) child.stdin?.end(options.input)
  })
}

/** `ip args...` */
export async function ip (...args: string[]): Promise<string> { return await sh('ip', args) }

/** Runs `cmd args...` inside namespace `ns`. */
export async function nsExec (ns: string, cmd: string, ...args: string[]): Promise<string> {
  return await sh('ip', ['netns', 'exec', ns, cmd, ...args])
}

export async function addNetns (ns: string): Promise<void> {
  await ip('netns', 'add', ns)
  await ip('-n', ns, 'link', 'set', 'lo', 'up')
}

/** A veth pair made directly in its two namespaces (never in ours): `a` in `nsA`, `b` in `nsB`. */
export async function addVeth (nsA: string, a: string, nsB: string, b: string): Promise<void> {
  await ip('-n', nsA, 'link', 'add', a, 'type', 'veth', 'peer', 'name', b, 'netns', nsB)
}

export async function addBridge (ns: string, name: string): Promise<void> {
  await ip('-n', ns, 'link', 'add', name, 'type', 'bridge')
  await ip('-n', ns, 'link', 'set', name, 'up')
}

export async function attach (ns: string, link: string, bridge: string): Promise<void> {
  await ip('-n', ns, 'link', 'set', link, 'master', bridge)
}

export async function linkUp (ns: string, link: string, cidr?: string): Promise<void> {
  if (cidr != null) await ip('-n', ns, 'addr', 'add', cidr, 'dev', link)
  await ip('-n', ns, 'link', 'set', link, 'up')
}

export async function defaultRoute (ns: string, via: string): Promise<void> {
  await ip('-n', ns, 'route', 'add', 'default', 'via', via)
}

export async function sysctl (ns: string, key: string, value: string): Promise<void> {
  await nsExec(ns, 'sysctl', '-q', '-w', `${key}=${value}`)
}

/** Loads an nftables ruleset (`nft -f -`) inside `ns`. */
export async function nft (ns: string, ruleset: string): Promise<void> {
  await sh('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], { input: ruleset })
}

/** Bytes of burst a tbf at `bytesPerSecond` gets: enough for a GSO super-packet and 50 ms of rate. */
export function tbfBurstBytes (bytesPerSecond: number): number {
  return Math.max(128 * 1024, Math.ceil(bytesPerSecond / 20))
}

/** Caps egress of `link` in `ns` with tbf; 0 or undefined removes the cap. */
export async function capLink (ns: string, link: string, bytesPerSecond: number | undefined): Promise<void> {
  if (bytesPerSecond == null || bytesPerSecond === 0) {
    try { await sh('tc', ['-n', ns, 'qdisc', 'del', 'dev', link, 'root']) } catch {}
    return
  }
  if (!Number.isSafeInteger(bytesPerSecond) || bytesPerSecond < 1000) throw new TestbedError(`a link cap must be a whole number of bytes per second, at least 1000: ${bytesPerSecond}`)
  await sh('tc', ['-n', ns, 'qdisc', 'replace', 'dev', link, 'root', 'tbf',
    'rate', `${bytesPerSecond * 8}bit`, 'burst', String(tbfBurstBytes(bytesPerSecond)), 'latency', '100ms'])
}

/** Namespaces that exist now. */
export async function listNetns (): Promise<string[]> {
  const out = await ip('netns', 'list')
  return out.split('\n').map(l => l.trim().split(/\s+/)[0]).filter(n => n !== '' && n != null)
}

/** Ids of processes running in `ns` (empty when it has none or is gone). */
export async function netnsPids (ns: string): Promise<number[]> {
  try {
    return (await ip('netns', 'pids', ns)).split(/\s+/).filter(Boolean).map(Number)
  } catch {
    return []
  }
}

function killAll (pids: number[]): void {
  for (const pid of pids) {
    try { process.kill(pid, 'SIGKILL') } catch {}
  }
}

/** SIGKILLs every process in `ns`, then deletes it (its links, bridges and nft tables go with it). */
export async function deleteNetns (ns: string): Promise<void> {
  // A process may fork while we kill; go round until none is left.
  for (let round = 0; round < 10; round++) {
    const pids = await netnsPids(ns)
    if (pids.length === 0) break
    killAll(pids)
    await new Promise(resolve => setImmediate(resolve))
  }
  try { await ip('netns', 'del', ns) } catch (err) {
    if ((await listNetns()).includes(ns)) throw err
  }
}

/** The same, synchronously, for an `exit` handler. */
export function deleteNetnsSync (ns: string): void {
  for (let round = 0; round < 10; round++) {
    let pids: number[] = []
    try { pids = execFileSync('ip', ['netns', 'pids', ns], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().split(/\s+/).filter(Boolean).map(Number) } catch {}
    if (pids.length === 0) break
    killAll(pids)
  }
  try { execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' }) } catch {}
}
