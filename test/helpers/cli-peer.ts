/**
 * Test harness: runs `peerverse start` as a real child process on loopback and talks to it
 * through its API. Every peer is killed and its temp dir removed by `cleanup()`.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { once } from 'node:events'
import { ApiClient } from '../../src/api/client.ts'
import { readApiInfo } from '../../src/api/server.ts'
import { CONFIG_FILE, type PartialConfig } from '../../src/node/config.ts'

export const ROOT = resolve(import.meta.dirname, '../..')
export const CLI = join(ROOT, 'src/cli/main.ts')

export interface ReadyLine {
  event: 'ready'
  peerId: string
  did: string
  addresses: string[]
  api: string
  dataDir: string
}

export interface CliPeer {
  proc: ChildProcess
  dataDir: string
  ready: ReadyLine
  api: ApiClient
  stderr: () => string
  /** The TCP multiaddr with /p2p/, for others to bootstrap from. */
  addr: string
}

/** Runs the CLI to completion and returns its exit code and output. */
export async function runCli (args: string[], options: { env?: NodeJS.ProcessEnv } = {}): Promise<{ code: number, stdout: string, stderr: string }> {
  const proc = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  proc.stdout.on('data', d => { stdout += d })
  proc.stderr.on('data', d => { stderr += d })
  const [code] = await once(proc, 'exit') as [number]
  return { code, stdout, stderr }
}

export class PeerSet {
  readonly peers: CliPeer[] = []
  private readonly dirs: string[] = []

  async tempDir (): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'peerverse-test-'))
    this.dirs.push(dir)
    return dir
  }

  /**
   * Starts a peer on loopback (TCP on a free port, API on a free port, DHT server mode, mDNS off:
   * a test reaches only loopback and its own namespaces). `dhtMode: 'default'` passes no
   * `--dht-mode`, as a user would. Unless `extra` names a chain (--genesis, --join) or `devnet` is
   * false, it runs a devnet of its own (--devnet) whatever its bootstrap peers follow, as peers did
   * before networks were joined. `config` is written to the data dir's config.json first.
   */
  async start (options: { dataDir?: string, bootstrap?: string[], listen?: string[], extra?: string[], devnet?: boolean, dhtMode?: 'server' | 'client' | 'auto' | 'default', config?: PartialConfig } = {}): Promise<CliPeer> {
    const dataDir = options.dataDir ?? await this.tempDir()
    if (options.config != null) await writeFile(join(dataDir, CONFIG_FILE), JSON.stringify(options.config))
    const listen = options.listen ?? ['/ip4/127.0.0.1/tcp/0']
    const dhtMode = options.dhtMode ?? 'server'
    const args = [CLI, 'start', '--data', dataDir, '--api', '127.0.0.1:0', '--no-mdns', '--json',
      ...(dhtMode === 'default' ? [] : ['--dht-mode', dhtMode]),
      ...listen.flatMap(l => ['--listen', l]),
      ...(options.bootstrap ?? []).flatMap(b => ['--bootstrap', b]),
      ...(options.extra ?? []),
      ...(options.devnet !== false && !(options.extra ?? []).some(x => x === '--genesis' || x === '--join' || x === '--devnet') ? ['--devnet'] : [])]
    const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let stderr = ''
    proc.stderr!.on('data', d => { stderr += d })
    const ready = await new Promise<ReadyLine>((resolve, reject) => {
      let buf = ''
      const onData = (d: Buffer): void => {
        buf += d.toString()
        const nl = buf.indexOf('\n')
        if (nl >= 0) {
          proc.stdout!.off('data', onData)
          try { resolve(JSON.parse(buf.slice(0, nl))) } catch (err) { reject(err) }
        }
      }
      proc.stdout!.on('data', onData)
      proc.once('exit', code => { reject(new Error(`peer exited with ${code} before ready: ${stderr}`)) })
    })
    const info = await readApiInfo(dataDir)
    const peer: CliPeer = {
      proc,
      dataDir,
      ready,
      api: new ApiClient(info.url, info.token),
      stderr: () => stderr,
      addr: ready.addresses.find(a => a.includes('/tcp/') && !a.includes('/ws') && !a.includes('p2p-circuit')) ?? ready.addresses[0]
    }
    this.peers.push(peer)
    return peer
  }

  /** SIGKILL, no clean shutdown. */
  async kill (peer: CliPeer): Promise<void> {
    if (peer.proc.exitCode != null || peer.proc.signalCode != null) return
    const exited = once(peer.proc, 'exit')
    peer.proc.kill('SIGKILL')
    await exited
  }

  /** SIGTERM and wait for the clean exit; returns the exit code. */
  async stop (peer: CliPeer): Promise<number | null> {
    if (peer.proc.exitCode != null || peer.proc.signalCode != null) return peer.proc.exitCode
    const exited = once(peer.proc, 'exit') as Promise<[number | null]>
    peer.proc.kill('SIGTERM')
    const [code] = await exited
    return code
  }

  async cleanup (): Promise<void> {
    await Promise.all(this.peers.map(async p => this.kill(p)))
    await Promise.all(this.dirs.map(async d => rm(d, { recursive: true, force: true })))
  }
}

/** Polls `check` until it returns a truthy value (waits on state, with a deadline that fails the test). */
export async function waitFor<T> (what: string, check: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 60_000, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let lastError: unknown
  while (Date.now() < deadline) {
    try {
      const v = await check()
      if (v) return v
    } catch (err) {
      lastError = err
    }
    await new Promise(r => setTimeout(r, intervalMs))
  }
  throw new Error(`timed out waiting for ${what}${lastError != null ? `: ${(lastError as Error).message}` : ''}`)
}
