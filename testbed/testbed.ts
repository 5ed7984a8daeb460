/**
 * Node-only. A network-namespace testbed: an "internet" (one namespace holding a bridge, public
 * addresses in 11.0.0.0/16, outside libp2p's private ranges) with hosts on it, and homes, each a
 * private 10.H.0.0/24 behind its own NAT router (nftables masquerade). Real peers run inside with
 * `ip netns exec`. Nothing links to the host's own network namespace: the test process talks to
 * peers only through unix sockets (see peer.ts).
 *
 * Every name (namespace, link, bridge, nft table) starts with the testbed's prefix, which carries
 * the creating pid, so `cleanStaleTestbeds()` can remove what a killed run left. Deleting the
 * namespaces removes all the rest; `destroy()` does that, and so do exit and signal handlers while
 * a testbed lives.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  TestbedError, addBridge, addNetns, addVeth, attach, capLink, defaultRoute, deleteNetns, deleteNetnsSync,
  ip, listNetns, nft, sh, sysctl
} from './netns.ts'

export { TestbedError }

export type NatKind = 'cone' | 'symmetric'
export interface HomeSpec { name: string, nat: NatKind, hosts: number, uplinkBytesPerSecond?: number }
export interface TestbedSpec {
  publicHosts: number
  homes: HomeSpec[]
  /**
   * 'public' (default): the internet is INTERNET_CIDR, addresses libp2p treats as public (so AutoNAT
   * checks them). 'private': PRIVATE_INTERNET_CIDR, for runs that measure links, not reachability.
   */
  internet?: 'public' | 'private'
}

export interface TbHost {
  name: string
  ns: string
  /** The host's own address: public for internet hosts and routers (WAN), private 10.x inside a home. */
  ip: string
  /** The link its traffic leaves by (inside `ns`): its uplink. */
  link: string
  /** The testbed's temp dir (shared by every namespace: namespaces share the filesystem). */
  dir: string
  /** `ip netns exec NS argv...`; stdout and stderr piped, stdin too with `stdin: true`. */
  spawn: (argv: string[], options?: { env?: NodeJS.ProcessEnv, stdin?: boolean }) => ChildProcess
  run: (argv: string[], options?: { timeoutMs?: number }) => Promise<{ code: number, stdout: string, stderr: string }>
  capEgress: (bytesPerSecond: number | undefined) => Promise<void>
}
export interface TbHome { name: string, nat: NatKind, router: TbHost, hosts: TbHost[] }

/** Most hosts on the internet, homes, and hosts per home (addresses are laid out by these). */
export const MAX_PUBLIC_HOSTS = 200
export const MAX_HOMES = 50
export const MAX_HOSTS_PER_HOME = 50
/** How long `TbHost.run` waits by default. */
export const RUN_TIMEOUT_MS = 30_000
/** The internet's range: public to libp2p (not in its private list), and never leaves the testbed. */
export const INTERNET_CIDR = '11.0.0.0/16'
/** The internet's range with `internet: 'private'`: private to libp2p, so no AutoNAT dial-backs. */
export const PRIVATE_INTERNET_CIDR = '172.16.0.0/16'

const PREFIX_RE = /^pv([0-9a-z]{5})[0-9a-z]/
let counter = 0
const live = new Set<Testbed>()
let handlersOn = false

function pidAlive (pid: number): boolean {
  try { process.kill(pid, 0); return true } catch (err) { return (err as NodeJS.ErrnoException).code === 'EPERM' }
}

function onExit (): void { for (const tb of live) tb.destroySync() }
function onSignal (signal: NodeJS.Signals): void {
  onExit()
  process.exit(signal === 'SIGINT' ? 130 : 143)
}

function setHandlers (): void {
  if (live.size > 0 && !handlersOn) {
    process.on('exit', onExit)
    process.on('SIGINT', onSignal)
    process.on('SIGTERM', onSignal)
    handlersOn = true
  } else if (live.size === 0 && handlersOn) {
    process.off('exit', onExit)
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    handlersOn = false
  }
}

function checkSpec (spec: TestbedSpec): void {
  const whole = (n: unknown, max: number, what: string): void => {
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0 || n > max) throw new TestbedError(`${what} must be a whole number from 0 to ${max}: ${String(n)}`)
  }
  whole(spec.publicHosts, MAX_PUBLIC_HOSTS, 'publicHosts')
  whole(spec.homes.length, MAX_HOMES, 'homes')
  for (const h of spec.homes) {
    whole(h.hosts, MAX_HOSTS_PER_HOME, `hosts of home ${h.name}`)
    if (h.nat !== 'cone' && h.nat !== 'symmetric') throw new TestbedError(`home ${h.name}: nat must be cone or symmetric`)
  }
  if (spec.internet != null && spec.internet !== 'public' && spec.internet !== 'private') throw new TestbedError('internet must be public or private')
}

/**
 * The nftables ruleset of a home router: masquerade out of `wan`; in from `wan`, only what
 * conntrack knows, both forwarded and to the router itself. A home router drops unsolicited WAN
 * input; one that accepted it would confirm a conntrack entry for (remote -> router:port) when a
 * peer's ICE check arrives before our own first packet to that peer, and our later outbound
 * packet on the same tuple would then be masqueraded to another port: the mapping STUN reported
 * would change under the punch.
 */
export function natRuleset (table: string, wan: string, nat: NatKind): string {
  return `table ip ${table} {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "${wan}" masquerade${nat === 'symmetric' ? ' fully-random' : ''}
  }
  chain input {
    type filter hook input priority filter; policy accept;
    iifname "${wan}" ct state established,related accept
    iifname "${wan}" drop
  }
  chain forward {
    type filter hook forward priority filter; policy accept;
    iifname "${wan}" ct state established,related accept
    iifname "${wan}" drop
  }
}
`
}

export class Testbed {
  readonly prefix: string
  readonly dir: string
  readonly internet: TbHost[] = []
  readonly homes: TbHome[] = []
  private readonly namespaces: string[] = []
  private readonly procs = new Set<ChildProcess>()
  private destroyed = false

  private constructor (prefix: string, dir: string) {
    this.prefix = prefix
    this.dir = dir
  }

  static async create (spec: TestbedSpec): Promise<Testbed> {
    checkSpec(spec)
    await cleanStaleTestbeds()
    const prefix = `pv${process.pid.toString(36).padStart(5, '0').slice(-5)}${(counter++ % 36).toString(36)}`
    const tb = new Testbed(prefix, mkdtempSync(join(tmpdir(), `peerverse-testbed-${prefix}-`)))
    live.add(tb)
    setHandlers()
    try {
      await tb.build(spec)
    } catch (err) {
      await tb.destroy()
      throw err
    }
    return tb
  }

  private async ns (suffix: string): Promise<string> {
    const name = `${this.prefix}${suffix}`
    this.namespaces.push(name)
    await addNetns(name)
    return name
  }

  private host (name: string, ns: string, address: string, link: string): TbHost {
    return {
      name,
      ns,
      ip: address,
      link,
      dir: this.dir,
      spawn: (argv, options = {}) => this.spawnIn(ns, argv, options.env, options.stdin),
      run: async (argv, options = {}) => await this.runIn(ns, argv, options.timeoutMs ?? RUN_TIMEOUT_MS),
      capEgress: async bytesPerSecond => { await capLink(ns, link, bytesPerSecond) }
    }
  }

  private async build (spec: TestbedSpec): Promise<void> {
    const p = this.prefix
    const base = (spec.internet === 'private' ? PRIVATE_INTERNET_CIDR : INTERNET_CIDR).split('.').slice(0, 2).join('.')
    const inet = await this.ns('net')
    const br = `${p}br`
    await addBridge(inet, br)
    for (let i = 0; i < spec.publicHosts; i++) {
      const ns = await this.ns(`i${i}`)
      const address = `${base}.1.${i + 1}`
      await addVeth(ns, `${p}a${i}`, inet, `${p}b${i}`)
      await attach(inet, `${p}b${i}`, br)
      await ip('-n', inet, 'link', 'set', `${p}b${i}`, 'up')
      await ip('-n', ns, 'addr', 'add', `${address}/16`, 'dev', `${p}a${i}`)
      await ip('-n', ns, 'link', 'set', `${p}a${i}`, 'up')
      this.internet.push(this.host(`internet${i}`, ns, address, `${p}a${i}`))
    }
    for (let h = 0; h < spec.homes.length; h++) {
      const home = spec.homes[h]
      const n = h + 1
      const rns = await this.ns(`r${n}`)
      const wan = `${p}w${n}`
      const lan = `${p}l${n}`
      const wanAddr = `${base}.2.${n}`
      const lanAddr = `10.${n}.0.1`
      await addVeth(rns, wan, inet, `${p}x${n}`)
      await attach(inet, `${p}x${n}`, br)
      await ip('-n', inet, 'link', 'set', `${p}x${n}`, 'up')
      await ip('-n', rns, 'addr', 'add', `${wanAddr}/16`, 'dev', wan)
      await ip('-n', rns, 'link', 'set', wan, 'up')
      await addBridge(rns, lan)
      await ip('-n', rns, 'addr', 'add', `${lanAddr}/24`, 'dev', lan)
      await sysctl(rns, 'net.ipv4.ip_forward', '1')
      await nft(rns, natRuleset(`${p}nat`, wan, home.nat))
      const router = this.host(`${home.name}-router`, rns, wanAddr, wan)
      const hosts: TbHost[] = []
      for (let j = 0; j < home.hosts; j++) {
        const ns = await this.ns(`h${n}x${j}`)
        const address = `10.${n}.0.${j + 10}`
        const inner = `${p}c${n}x${j}`
        const outer = `${p}d${n}x${j}`
        await addVeth(ns, inner, rns, outer)
        await attach(rns, outer, lan)
        await ip('-n', rns, 'link', 'set', outer, 'up')
        await ip('-n', ns, 'addr', 'add', `${address}/24`, 'dev', inner)
        await ip('-n', ns, 'link', 'set', inner, 'up')
        await defaultRoute(ns, lanAddr)
        hosts.push(this.host(`${home.name}-${j}`, ns, address, inner))
      }
      if (home.uplinkBytesPerSecond != null) await router.capEgress(home.uplinkBytesPerSecond)
      this.homes.push({ name: home.name, nat: home.nat, router, hosts })
    }
  }

  private spawnIn (ns: string, argv: string[], env?: NodeJS.ProcessEnv, stdin = false): ChildProcess {
    if (this.destroyed) throw new TestbedError('the testbed is destroyed')
    const child = spawn('ip', ['netns', 'exec', ns, ...argv], { env: env != null ? { ...process.env, ...env } : process.env, stdio: [stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'] })
    this.procs.add(child)
    child.once('exit', () => { this.procs.delete(child) })
    child.on('error', () => {})
    return child
  }

  private async runIn (ns: string, argv: string[], timeoutMs: number): Promise<{ code: number, stdout: string, stderr: string }> {
    const child = this.spawnIn(ns, argv)
    let stdout = ''
    let stderr = ''
    child.stdout!.on('data', d => { stdout += d })
    child.stderr!.on('data', d => { stderr += d })
    const timer = setTimeout(() => { child.kill('SIGKILL') }, timeoutMs)
    const code = await new Promise<number>(resolve => {
      child.once('close', (c, signal) => { resolve(c ?? (signal != null ? 128 : 1)) })
      child.once('error', () => { resolve(127) })
    })
    clearTimeout(timer)
    return { code, stdout, stderr }
  }

  /** Kills every process started in its namespaces, deletes namespaces (links, tables with them) and its temp dir. Safe twice. */
  async destroy (): Promise<void> {
    if (this.destroyed) return
    this.destroyed = true
    for (const child of this.procs) child.kill('SIGKILL')
    for (const ns of [...this.namespaces].reverse()) await deleteNetns(ns)
    await rm(this.dir, { recursive: true, force: true })
    live.delete(this)
    setHandlers()
  }

  /** `destroy()` for an exit handler. */
  destroySync (): void {
    if (this.destroyed) return
    this.destroyed = true
    for (const child of this.procs) child.kill('SIGKILL')
    for (const ns of [...this.namespaces].reverse()) deleteNetnsSync(ns)
    try { rmSync(this.dir, { recursive: true, force: true }) } catch {}
    live.delete(this)
  }
}

let unavailable: Promise<string | undefined> | undefined

/** undefined when this machine can build a testbed (root, `ip netns`, veth, bridge, nft masquerade, tc tbf); else the reason, for t.skip. */
export async function testbedUnavailable (): Promise<string | undefined> {
  unavailable ??= probe()
  return await unavailable
}

async function probe (): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'the testbed needs root (network namespaces)'
  for (const tool of ['ip', 'nft', 'tc', 'sysctl']) {
    try { await sh('sh', ['-c', `command -v ${tool}`]) } catch { return `the testbed needs \`${tool}\` (${tool === 'nft' ? 'apt-get install nftables' : 'iproute2, procps'})` }
  }
  const p = `pv${process.pid.toString(36).padStart(5, '0').slice(-5)}z`
  const a = `${p}pa`
  const b = `${p}pb`
  try {
    await addNetns(a)
    await addNetns(b)
    await addVeth(a, `${p}va`, b, `${p}vb`)
    await addBridge(b, `${p}br`)
    await attach(b, `${p}vb`, `${p}br`)
    await sysctl(b, 'net.ipv4.ip_forward', '1')
    await nft(b, natRuleset(`${p}nat`, `${p}vb`, 'symmetric'))
    await capLink(a, `${p}va`, 1_000_000)
    return undefined
  } catch (err) {
    return `this machine cannot build a testbed: ${(err as Error).message}`
  } finally {
    await deleteNetns(a).catch(() => {})
    await deleteNetns(b).catch(() => {})
  }
}

/** Removes testbeds left by runs that died (their prefix names a pid that is gone); returns the namespaces removed. */
export async function cleanStaleTestbeds (): Promise<string[]> {
  const removed: string[] = []
  let names: string[] = []
  try { names = await listNetns() } catch { return removed }
  const stale = (name: string): boolean => {
    const m = PREFIX_RE.exec(name)
    return m != null && !pidAlive(parseInt(m[1], 36))
  }
  for (const ns of names) {
    if (!stale(ns)) continue
    await deleteNetns(ns)
    removed.push(ns)
  }
  for (const entry of await readdir(tmpdir()).catch(() => [] as string[])) {
    const m = /^peerverse-testbed-(pv[0-9a-z]{6})-/.exec(entry)
    if (m != null && stale(m[1])) await rm(join(tmpdir(), entry), { recursive: true, force: true })
  }
  return removed
}
