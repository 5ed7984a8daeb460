/**
 * The `peerverse` command: parses flags and calls the node or its API. No logic of its own.
 * Usage errors exit 2, runtime errors exit 1, each with one line on stderr.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { stat } from 'node:fs/promises'
import { resolve } from 'node:path'
import { ApiClient } from '../api/client.ts'
import { ApiServer, ensureApiToken } from '../api/server.ts'
import { initIdentity } from '../identity/keystore.ts'
import { loadConfig, parseHostPort, type PartialConfig } from '../node/config.ts'
import { createNode } from '../node/node.ts'
import type { NodeStatus, PeerInfoView } from '../node/node.ts'
import type { DhtMode } from '../net/network.ts'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'

class UsageError extends Error {
  name = 'UsageError'
}

const DEFAULT_DATA_DIR = process.env.PEERVERSE_DATA ?? '.peerverse-data'

const HELP: Record<string, string> = {
  main: `peerverse: a peer of the open metaverse

Usage: peerverse <command> [options]

Commands:
  init       create an identity (Ed25519 key, did:key) in a data dir
  start      run the peer in the foreground until Ctrl-C
  status     show the running peer: ids, addresses, connected peers
  peers      list connected peers with their did:key
  find-peer  look a peer up through the DHT
  connect    dial a multiaddr
  gossip     publish or subscribe on a gossip topic

Run 'peerverse <command> --help' for a command's options.
The data dir defaults to $PEERVERSE_DATA or ./.peerverse-data.`,
  init: `Usage: peerverse init [--data DIR]

Creates an Ed25519 user key (named by a did:key) and a libp2p peer key in DIR.
Key files are readable by their owner only. An existing key is never overwritten.`,
  start: `Usage: peerverse start [--data DIR] [--listen MULTIADDR ...] [--announce MULTIADDR ...]
                       [--bootstrap MULTIADDR ...] [--api HOST:PORT | --no-api]
                       [--dht-mode server|client|auto] [--no-relay-server] [--json]

Runs the peer until SIGINT or SIGTERM. Creates the identity on first run.
  --listen      listen address (repeatable); default TCP 7410, WebSocket 7411 and a relay slot
  --announce    address to announce instead of the listen addresses (repeatable)
  --bootstrap   a peer to enter the network through, /.../p2p/<peer id> (repeatable)
  --api         local API address, default 127.0.0.1:7400 (port 0 picks a free one)
  --dht-mode    server answers DHT queries; auto (default) does once found reachable
  --json        print one JSON line when ready instead of the text summary`,
  status: `Usage: peerverse status [--data DIR] [--json]

Asks the running peer for its peer id, did, addresses and connected peers.`,
  peers: `Usage: peerverse peers [--data DIR] [--json]`,
  'find-peer': `Usage: peerverse find-peer PEER_ID [--data DIR] [--json]

Looks the peer up through the DHT (not the local cache) and prints its addresses.`,
  connect: `Usage: peerverse connect MULTIADDR [--data DIR]`,
  gossip: `Usage: peerverse gossip publish TOPIC TEXT [--data DIR]
       peerverse gossip subscribe TOPIC [--data DIR]   (prints messages until Ctrl-C)`
}

const COMMON = {
  data: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  json: { type: 'boolean' }
} as const satisfies ParseArgsConfig['options']

function parse<T extends NonNullable<ParseArgsConfig['options']>> (args: string[], options: T) {
  try {
    return parseArgs({ args, options: { ...COMMON, ...options }, allowPositionals: true, strict: true })
  } catch (err) {
    throw new UsageError((err as Error).message.split('\n')[0])
  }
}

function out (line: string): void {
  process.stdout.write(line + '\n')
}

async function requireDir (dir: string): Promise<void> {
  try {
    if (!(await stat(dir)).isDirectory()) throw new Error()
  } catch {
    throw new UsageError(`data dir ${dir} does not exist (create it with: peerverse init --data ${dir})`)
  }
}

async function cmdInit (args: string[]): Promise<void> {
  const { values } = parse(args, {})
  if (values.help === true) return out(HELP.init)
  const dir = resolve(values.data ?? DEFAULT_DATA_DIR)
  const id = await initIdentity(dir)
  if (values.json === true) return out(JSON.stringify({ dataDir: dir, did: id.did, peerId: peerIdFromPrivateKey(id.peerKey).toString(), created: id.created }))
  out(id.created ? `created identity in ${dir}` : `identity already exists in ${dir} (kept)`)
  out(`did: ${id.did}`)
}

async function cmdStart (args: string[]): Promise<void> {
  const { values } = parse(args, {
    listen: { type: 'string', multiple: true },
    announce: { type: 'string', multiple: true },
    bootstrap: { type: 'string', multiple: true },
    api: { type: 'string' },
    'no-api': { type: 'boolean' },
    'dht-mode': { type: 'string' },
    'no-relay-server': { type: 'boolean' }
  })
  if (values.help === true) return out(HELP.start)
  const dir = resolve(values.data ?? DEFAULT_DATA_DIR)
  const overrides: PartialConfig = {
    listen: values.listen,
    announce: values.announce,
    bootstrap: values.bootstrap,
    api: values['no-api'] === true ? false : values.api,
    dht: { mode: values['dht-mode'] as DhtMode | undefined },
    relay: { server: values['no-relay-server'] === true ? false : undefined }
  }
  const config = await loadConfig(dir, overrides)
  const node = await createNode(config)
  let api: ApiServer | undefined
  node.addEventListener('bootstrap:error', evt => {
    process.stderr.write(`peerverse: bootstrap ${evt.detail.address} unreachable (${evt.detail.error}); retrying\n`)
  })
  await node.start()
  try {
    if (config.api !== false) {
      const { host, port } = parseHostPort(config.api)
      api = new ApiServer(node, { host, port, token: await ensureApiToken(dir) })
      await api.start()
    }
  } catch (err) {
    await node.stop()
    throw err
  }
  let stopping = false
  const shutdown = (signal: string): void => {
    if (stopping) return
    stopping = true
    process.stderr.write(`peerverse: ${signal}, stopping\n`)
    void (async () => {
      await api?.stop()
      await node.stop()
      process.exit(0)
    })()
  }
  process.on('SIGINT', () => { shutdown('SIGINT') })
  process.on('SIGTERM', () => { shutdown('SIGTERM') })
  if (values.json === true) {
    out(JSON.stringify({ event: 'ready', peerId: node.peerId, did: node.did, addresses: node.addresses(), api: api?.url ?? null, dataDir: dir }))
  } else {
    out('peerverse peer running')
    out(`  peer id:  ${node.peerId}`)
    out(`  did:      ${node.did}`)
    for (const a of node.addresses()) out(`  listen:   ${a}`)
    if (api != null) out(`  api:      ${api.url} (token in ${resolve(dir, 'api-token')})`)
    out('Press Ctrl-C to stop.')
  }
}

async function client (values: { data?: string }): Promise<ApiClient> {
  const dir = resolve(values.data ?? DEFAULT_DATA_DIR)
  await requireDir(dir)
  return ApiClient.forDataDir(dir)
}

function printPeers (peers: PeerInfoView[]): void {
  if (peers.length === 0) out('  (none)')
  for (const p of peers) out(`  ${p.peerId}${p.did != null ? `  ${p.did}` : ''}  ${p.addresses.join(' ')}`)
}

async function cmdStatus (args: string[]): Promise<void> {
  const { values } = parse(args, {})
  if (values.help === true) return out(HELP.status)
  const api = await client(values)
  const status = await api.request<NodeStatus>('GET', '/api/v0/status')
  if (values.json === true) return out(JSON.stringify(status))
  const { peers } = await api.request<{ peers: PeerInfoView[] }>('GET', '/api/v0/peers')
  out(`peer id:   ${status.peerId}`)
  out(`did:       ${status.did}`)
  out('addresses:')
  for (const a of status.addresses) out(`  ${a}`)
  out(`peers (${peers.length}):`)
  printPeers(peers)
}

async function cmdPeers (args: string[]): Promise<void> {
  const { values } = parse(args, {})
  if (values.help === true) return out(HELP.peers)
  const { peers } = await (await client(values)).request<{ peers: PeerInfoView[] }>('GET', '/api/v0/peers')
  if (values.json === true) return out(JSON.stringify(peers))
  printPeers(peers)
}

async function cmdFindPeer (args: string[]): Promise<void> {
  const { values, positionals } = parse(args, {})
  if (values.help === true) return out(HELP['find-peer'])
  if (positionals.length !== 1) throw new UsageError('find-peer takes one peer id')
  const result = await (await client(values)).request<{ addresses: string[], from: string }>('GET', `/api/v0/dht/peer/${encodeURIComponent(positionals[0])}`)
  if (values.json === true) return out(JSON.stringify(result))
  for (const a of result.addresses) out(a)
}

async function cmdConnect (args: string[]): Promise<void> {
  const { values, positionals } = parse(args, {})
  if (values.help === true) return out(HELP.connect)
  if (positionals.length !== 1) throw new UsageError('connect takes one multiaddr')
  const { peerId } = await (await client(values)).request<{ peerId: string }>('POST', '/api/v0/connect', { address: positionals[0] })
  out(`connected to ${peerId}`)
}

async function cmdGossip (args: string[]): Promise<void> {
  const { values, positionals } = parse(args, {})
  if (values.help === true) return out(HELP.gossip)
  const [verb, topic, ...rest] = positionals
  const api = await client(values)
  if (verb === 'publish' && topic != null && rest.length === 1) {
    const { recipients } = await api.request<{ recipients: number }>('POST', '/api/v0/gossip/publish', { topic, data: rest[0] })
    return out(`published to ${recipients} peers`)
  }
  if (verb === 'subscribe' && topic != null && rest.length === 0) {
    await api.request('POST', '/api/v0/gossip/subscribe', { topic })
    const ws = new WebSocket(`${api.url.replace(/^http/, 'ws')}/api/v0/events?token=${encodeURIComponent(api.token)}`)
    await new Promise<void>((resolve, reject) => {
      ws.addEventListener('message', evt => {
        const e = JSON.parse(String(evt.data))
        if (e.type !== 'gossip:message' || e.topic !== topic) return
        const line = { from: e.from, text: Buffer.from(e.data, 'base64').toString('utf8') }
        out(values.json === true ? JSON.stringify(line) : `${line.from}: ${line.text}`)
      })
      ws.addEventListener('close', () => { resolve() })
      ws.addEventListener('error', () => { reject(new Error('event stream closed')) })
    })
    return
  }
  throw new UsageError('usage: peerverse gossip publish TOPIC TEXT | gossip subscribe TOPIC')
}

const COMMANDS: Record<string, (args: string[]) => Promise<void>> = {
  init: cmdInit,
  start: cmdStart,
  status: cmdStatus,
  peers: cmdPeers,
  'find-peer': cmdFindPeer,
  connect: cmdConnect,
  gossip: cmdGossip
}

export async function main (argv: string[]): Promise<number> {
  const [command, ...args] = argv
  if (command == null || command === '--help' || command === '-h' || command === 'help') {
    out(HELP.main)
    return command == null ? 2 : 0
  }
  const run = COMMANDS[command]
  if (run == null) {
    process.stderr.write(`peerverse: unknown command ${JSON.stringify(command)} (see peerverse --help)\n`)
    return 2
  }
  try {
    await run(args)
    return 0
  } catch (err) {
    const e = err as Error
    process.stderr.write(`peerverse: ${e.message}\n`)
    return e.name === 'UsageError' || e.name === 'ConfigError' ? 2 : 1
  }
}

const code = await main(process.argv.slice(2))
if (code !== 0) process.exit(code)
