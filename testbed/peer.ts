/**
 * Node-only. Real `peerverse start` processes inside a testbed namespace, driven through their API
 * from the test process. The API listens on 127.0.0.1:PORT inside the namespace, which the test
 * process cannot reach; forward.ts, run in the namespace, bridges it to a unix socket in the
 * testbed's dir, and this process listens on 127.0.0.1:PORT (the same port, so the API's Host
 * check passes) and pipes each connection to that socket.
 */
import type { ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp } from 'node:fs/promises'
import net from 'node:net'
import { join, resolve } from 'node:path'
import { ApiClient } from '../src/api/client.ts'
import { readApiInfo } from '../src/api/server.ts'
import type { ReadyLine } from '../test/helpers/cli-peer.ts'
import { TestbedError, type TbHost } from './testbed.ts'

export type { ReadyLine }

export const ROOT = resolve(import.meta.dirname, '..')
export const CLI = join(ROOT, 'src/cli/main.ts')
const FORWARD = join(ROOT, 'testbed/forward.ts')
/** The TCP port every testbed peer listens on (each namespace has its own ports). */
export const NS_PEER_PORT = 4001
/** How long a peer may take to print its ready line. */
export const NS_PEER_START_TIMEOUT_MS = 60_000

export interface NsPeer {
  host: TbHost
  ready: ReadyLine
  api: ApiClient
  dataDir: string
  /** Its /ip4/<host ip>/tcp/<port>/p2p/<id>. */
  addr: string
  /** The API's port on this host (and in its namespace). */
  apiPort: number
  /** The peer process's id (namespaces share the pid space). */
  pid: number
  stderr: () => string
  stop: () => Promise<void>
  kill: () => Promise<void>
}

async function firstLine (proc: ChildProcess, what: string, stderr: () => string, timeoutMs: number): Promise<string> {
  return await new Promise<string>((resolve, reject) => {
    let buf = ''
    const timer = setTimeout(() => { done(); reject(new TestbedError(`${what}: no ready line in ${timeoutMs} ms: ${stderr()}`)) }, timeoutMs)
    const onData = (d: Buffer): void => {
      buf += d.toString()
      const nl = buf.indexOf('\n')
      if (nl >= 0) { done(); resolve(buf.slice(0, nl)) }
    }
    const onExit = (code: number | null): void => { done(); reject(new TestbedError(`${what} exited with ${String(code)} before ready: ${stderr()}`)) }
    const done = (): void => { clearTimeout(timer); proc.stdout!.off('data', onData); proc.off('exit', onExit) }
    proc.stdout!.on('data', onData)
    proc.once('exit', onExit)
  })
}

async function exited (proc: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (proc.exitCode != null || proc.signalCode != null) return
  const gone = once(proc, 'exit')
  proc.kill(signal)
  await gone
}

/** Starts `peerverse start` on `host` (TCP on its address, port NS_PEER_PORT, mDNS off), with `args` after. */
export async function startNsPeer (host: TbHost, args: string[], options: { dataDir?: string, env?: NodeJS.ProcessEnv } = {}): Promise<NsPeer> {
  const dataDir = options.dataDir ?? await mkdtemp(join(host.dir, `${host.name}-`))
  const server = net.createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const apiPort = (server.address() as net.AddressInfo).port
  const socketPath = join(host.dir, `api-${apiPort}.sock`)
  const forward = host.spawn([process.execPath, FORWARD, socketPath, '127.0.0.1', String(apiPort)])
  let fwdErr = ''
  forward.stderr!.on('data', d => { fwdErr += d })
  server.on('connection', sock => {
    const up = net.connect(socketPath)
    sock.on('error', () => { up.destroy() })
    up.on('error', () => { sock.destroy() })
    sock.pipe(up)
    up.pipe(sock)
  })
  const proc = host.spawn([process.execPath, CLI, 'start', '--data', dataDir, '--api', `127.0.0.1:${apiPort}`, '--no-mdns', '--json',
    '--listen', `/ip4/${host.ip}/tcp/${NS_PEER_PORT}`, ...args], { env: options.env })
  let stderr = ''
  proc.stderr!.on('data', d => { stderr += d })
  const teardown = async (signal: NodeJS.Signals): Promise<void> => {
    await exited(proc, signal)
    await exited(forward, 'SIGKILL')
    server.close()
  }
  try {
    await firstLine(forward, `API forwarder on ${host.name}`, () => fwdErr, NS_PEER_START_TIMEOUT_MS)
    const ready = JSON.parse(await firstLine(proc, `peer on ${host.name}`, () => stderr, NS_PEER_START_TIMEOUT_MS)) as ReadyLine
    const info = await readApiInfo(dataDir)
    return {
      host,
      ready,
      api: new ApiClient(`http://127.0.0.1:${apiPort}`, info.token),
      dataDir,
      addr: `/ip4/${host.ip}/tcp/${NS_PEER_PORT}/p2p/${ready.peerId}`,
      apiPort,
      pid: proc.pid ?? 0,
      stderr: () => stderr,
      stop: async () => { await teardown('SIGTERM') },
      kill: async () => { await teardown('SIGKILL') }
    }
  } catch (err) {
    await teardown('SIGKILL')
    throw err
  }
}
