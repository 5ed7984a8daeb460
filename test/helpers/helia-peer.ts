/**
 * A stock Helia node in its own process, for interop tests: TCP on 127.0.0.1, Noise, Yamux,
 * identify and Bitswap at their defaults, an in-memory blockstore, no discovery or DHT. Run
 * directly it prints a ready line ({ peerId, addrs }) and then answers one JSON command per stdin
 * line with one JSON line on stdout:
 *   { id, cmd: 'add', size, seed }   -> { id, cid, sha256 }  (seeded bytes, the unixfs-v1-2025 profile)
 *   { id, cmd: 'dial', addr }        -> { id, ok }           (waits until it has identified the peer)
 *   { id, cmd: 'cat', cid, timeoutMs } -> { id, bytes, sha256, seconds }
 *   { id, cmd: 'peers' }             -> { id, peers }
 * Errors come back as { id, error, name }. `HeliaPeer` drives it from a test.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import { join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'

const ROOT = resolve(import.meta.dirname, '../..')

interface Reply { id: number, error?: string, name?: string, [key: string]: unknown }

/** Drives a Helia node in a child process (see the file's header). */
export class HeliaPeer {
  readonly proc: ChildProcess
  peerId = ''
  addrs: string[] = []
  private next = 1
  private readonly waiting = new Map<number, (r: Reply) => void>()
  private stderr = ''

  private constructor (proc: ChildProcess) {
    this.proc = proc
  }

  static async start (): Promise<HeliaPeer> {
    const proc = spawn(join(ROOT, 'node_modules/.bin/node'), [import.meta.filename], { stdio: ['pipe', 'pipe', 'pipe'], cwd: ROOT })
    const peer = new HeliaPeer(proc)
    proc.stderr?.on('data', d => { peer.stderr = (peer.stderr + String(d)).slice(-8192) })
    const lines = createInterface({ input: proc.stdout! })
    const ready = new Promise<void>((resolve, reject) => {
      proc.once('exit', code => { reject(new Error(`helia exited with ${code}: ${peer.stderr}`)) })
      lines.on('line', line => {
        let msg: Reply & { ready?: boolean, peerId?: string, addrs?: string[] }
        try { msg = JSON.parse(line) } catch { return }
        if (msg.ready === true) {
          peer.peerId = msg.peerId ?? ''
          peer.addrs = msg.addrs ?? []
          resolve()
          return
        }
        const w = peer.waiting.get(msg.id)
        peer.waiting.delete(msg.id)
        w?.(msg)
      })
    })
    await ready
    return peer
  }

  /** Sends one command and waits for its answer; an error answer throws an Error of its name. */
  async request (cmd: Record<string, unknown>): Promise<Reply> {
    const id = this.next++
    const reply = new Promise<Reply>((resolve, reject) => {
      this.waiting.set(id, resolve)
      this.proc.once('exit', () => { reject(new Error(`helia exited: ${this.stderr}`)) })
    })
    this.proc.stdin!.write(JSON.stringify({ ...cmd, id }) + '\n')
    const r = await reply
    if (r.error != null) {
      const err = new Error(r.error)
      err.name = r.name ?? 'Error'
      throw err
    }
    return r
  }

  async stop (): Promise<void> {
    if (this.proc.exitCode != null || this.proc.signalCode != null) return
    const exited = once(this.proc, 'exit')
    this.proc.kill('SIGKILL')
    await exited
  }
}

// ---------------------------------------------------------------------------------------------
// the child

async function child (): Promise<void> {
  const { noise } = await import('@chainsafe/libp2p-noise')
  const { yamux } = await import('@chainsafe/libp2p-yamux')
  const { withBitswap } = await import('@helia/bitswap')
  const { withLibp2pLight } = await import('@helia/libp2p')
  const { unixfs } = await import('@helia/unixfs')
  const { generateKeyPair } = await import('@libp2p/crypto/keys')
  const { identify } = await import('@libp2p/identify')
  const { tcp } = await import('@libp2p/tcp')
  const { multiaddr } = await import('@multiformats/multiaddr')
  const { MemoryBlockstore } = await import('blockstore-core')
  const { MemoryDatastore } = await import('datastore-core')
  const { createHeliaLight } = await import('helia')
  const { CID } = await import('multiformats/cid')
  const { seededBytes } = await import('./random.ts')

  const helia = withBitswap(withLibp2pLight(createHeliaLight({ blockstore: new MemoryBlockstore(), datastore: new MemoryDatastore() }), {
    privateKey: await generateKeyPair('Ed25519'),
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'], announce: [] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify() }
  }))
  await helia.start()
  const fs = unixfs(helia)
  const out = (msg: unknown): void => { process.stdout.write(JSON.stringify(msg) + '\n') }
  out({ ready: true, peerId: helia.libp2p.peerId.toString(), addrs: helia.libp2p.getMultiaddrs().map(a => a.toString()) })

  const handle = async (cmd: Record<string, any>): Promise<Record<string, unknown>> => {
    if (cmd.cmd === 'add') {
      const bytes = seededBytes(cmd.size, cmd.seed)
      const cid = await fs.addBytes(bytes, { profile: 'unixfs-v1-2025' } as never)
      return { cid: cid.toString(), sha256: createHash('sha256').update(bytes).digest('hex') }
    }
    if (cmd.cmd === 'dial') {
      const ma = multiaddr(cmd.addr)
      const identified = new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => { reject(new Error('no identify in time')) }, 10_000)
        const on = (evt: CustomEvent<{ peerId: { toString: () => string } }>): void => {
          if (evt.detail.peerId.toString() !== ma.getComponents().find(c => c.name === 'p2p')?.value) return
          clearTimeout(timer)
          helia.libp2p.removeEventListener('peer:identify', on as never)
          resolve()
        }
        helia.libp2p.addEventListener('peer:identify', on as never)
      })
      await Promise.all([helia.libp2p.dial(ma), identified])
      return { ok: true }
    }
    if (cmd.cmd === 'cat') {
      const hash = createHash('sha256')
      let bytes = 0
      const started = performance.now()
      for await (const chunk of fs.cat(CID.parse(cmd.cid), { signal: AbortSignal.timeout(cmd.timeoutMs ?? 30_000) })) {
        hash.update(chunk)
        bytes += chunk.length
      }
      return { bytes, sha256: hash.digest('hex'), seconds: (performance.now() - started) / 1000 }
    }
    if (cmd.cmd === 'peers') return { peers: helia.libp2p.getPeers().map(p => p.toString()) }
    throw new Error(`unknown command ${String(cmd.cmd)}`)
  }

  const lines = createInterface({ input: process.stdin })
  lines.on('line', line => {
    let cmd: Record<string, any>
    try { cmd = JSON.parse(line) } catch { return }
    handle(cmd).then(r => { out({ ...r, id: cmd.id }) }, (err: Error) => { out({ id: cmd.id, error: err.message, name: err.name }) })
  })
  lines.on('close', () => { void helia.stop().finally(() => process.exit(0)) })
}

if (process.argv[1] != null && import.meta.url === pathToFileURL(process.argv[1]).href) await child()
