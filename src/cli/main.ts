/**
 * The `peerverse` command: parses flags and calls the node or its API. No logic of its own.
 * Usage errors exit 2, runtime errors exit 1, each with one line on stderr.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { createReadStream, createWriteStream } from 'node:fs'
import { lstat, mkdir, readdir, rename, rm, stat, writeFile } from 'node:fs/promises'
import { spawn } from 'node:child_process'
import { devnetGenesis, GENESIS_FILE, genesisJson } from '../ledger/genesis.ts'
import { join, resolve } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
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
  add        import a file or directory into the store; prints its CID
  get        fetch a CID from the swarm and write it to a file or directory
  pin        keep a CID (fetching it first) / unpin: let it be collected
  ls         list pinned content
  gc         remove unpinned blocks from the store
  post       post to your feed (optionally with attachments)
  follow     follow a did / unfollow: stop following
  feed       the timeline of who you follow, newest first
  profile    set your profile, or show someone's
  mute       hide someone from your timeline / block: stop replicating them too
  balance    a balance on the ledger (yours by default)
  pay        send money to a did
  asset      mint an asset pointing at content, or transfer one
  assets     assets owned (yours by default)
  parcel     claim a land parcel in a space's grid, or transfer one; parcels: list them
  tx         a transaction's status: pending, committed at a height, or rejected with a reason
  faucet     on a devnet: get funds from the faucet
  chain      the chain: id, height, validators
  devnet     run a local network of validators (separate processes on loopback)
  space      create, join and leave spaces; say, who, chat, objects, and the owner's policy

Run 'peerverse <command> --help' for a command's options.
The data dir defaults to $PEERVERSE_DATA or ./.peerverse-data.`,
  init: `Usage: peerverse init [--data DIR]

Creates an Ed25519 user key (named by a did:key) and a libp2p peer key in DIR.
Key files are readable by their owner only. An existing key is never overwritten.`,
  start: `Usage: peerverse start [--data DIR] [--listen MULTIADDR ...] [--announce MULTIADDR ...]
                       [--bootstrap MULTIADDR ...] [--api HOST:PORT | --no-api]
                       [--dht-mode server|client|auto] [--no-relay-server] [--genesis FILE] [--json]

Runs the peer until SIGINT or SIGTERM. Creates the identity on first run.
  --listen      listen address (repeatable); default TCP 7410, WebSocket 7411 and a relay slot
  --announce    address to announce instead of the listen addresses (repeatable)
  --bootstrap   a peer to enter the network through, /.../p2p/<peer id> (repeatable)
  --api         local API address, default 127.0.0.1:7400 (port 0 picks a free one)
  --dht-mode    server answers DHT queries; auto (default) does once found reachable
  --genesis     the chain to follow (a genesis file); default: a single-validator devnet of
                your own, created in DIR/genesis.json on first start
  --json        print one JSON line when ready instead of the text summary`,
  status: `Usage: peerverse status [--data DIR] [--json]

Asks the running peer for its peer id, did, addresses and connected peers.`,
  peers: `Usage: peerverse peers [--data DIR] [--json]`,
  'find-peer': `Usage: peerverse find-peer PEER_ID [--data DIR] [--json]

Looks the peer up through the DHT (not the local cache) and prints its addresses.`,
  connect: `Usage: peerverse connect MULTIADDR [--data DIR]`,
  add: `Usage: peerverse add FILE|DIR [--name NAME] [--no-pin] [--data DIR] [--json]

Imports into the running peer's store and prints the CID (CIDv1; UnixFS, 1 MiB raw leaves,
balanced DAG of up to 1024 links: the unixfs-v1-2025 profile, so IPFS tools agree on it).
A directory gets a directory CID. The content is pinned unless --no-pin, and announced.`,
  get: `Usage: peerverse get CID [-o PATH] [--data DIR] [--json]

Fetches the whole file or directory from every peer that holds it (every block verified), then
writes it to PATH (default: the CID). A progress bar shows bytes, rate and peers on a terminal.
An interrupted get resumes from the blocks already fetched.`,
  pin: `Usage: peerverse pin CID [--name NAME] [--data DIR]
       peerverse unpin CID [--data DIR]`,
  ls: `Usage: peerverse ls [--data DIR] [--json]

Lists pinned content: CID, size and name.`,
  gc: `Usage: peerverse gc [--data DIR] [--json]

Removes every block not under a pin or a download in progress.`,
  post: `Usage: peerverse post TEXT [--attach FILE ...] [--reply-to ENTRY_ID] [--data DIR] [--json]

Appends a signed post (or a reply) to your feed; followers get it live or when they reconnect.
--attach adds each file to the content store and names it by CID in the post.`,
  follow: `Usage: peerverse follow DID [--data DIR]
       peerverse unfollow DID [--data DIR]`,
  feed: `Usage: peerverse feed [--limit N] [--before CURSOR] [--data DIR] [--json]

Posts and replies of the people you follow and your own, newest first. Each page ends with a
cursor for --before.`,
  profile: `Usage: peerverse profile set [--name NAME] [--bio TEXT] [--avatar CID] [--data DIR]
       peerverse profile [DID] [--data DIR] [--json]   (your own without DID)`,
  mute: `Usage: peerverse mute|unmute|block|unblock DID [--data DIR]

mute hides an author from your timeline; block also drops their feed and stops replicating it.`,
  balance: `Usage: peerverse balance [ADDRESS] [--data DIR] [--json]

Amounts are whole numbers of the smallest unit.`,
  pay: `Usage: peerverse pay ADDRESS AMOUNT [--fee N] [--no-wait] [--data DIR] [--json]

Signs a transfer with your key and waits until it is final (or rejected, with the reason).`,
  asset: `Usage: peerverse asset mint --content CID --name NAME [--no-wait] [--data DIR]
       peerverse asset transfer ASSET_ID ADDRESS [--no-wait] [--data DIR]`,
  assets: `Usage: peerverse assets [ADDRESS] [--data DIR] [--json]`,
  parcel: `Usage: peerverse parcel claim --space SPACE --x X --y Y --w W --h H [--no-wait] [--data DIR]
       peerverse parcel transfer PARCEL_ID ADDRESS [--no-wait] [--data DIR]
       peerverse parcels [ADDRESS] [--data DIR] [--json]`,
  tx: `Usage: peerverse tx TXID [--data DIR] [--json]`,
  faucet: `Usage: peerverse faucet [ADDRESS] [--no-wait] [--data DIR]   (devnets only)`,
  chain: `Usage: peerverse chain [--data DIR] [--json]`,
  devnet: `Usage: peerverse devnet [--validators N] [--dir DIR] [--base-port P]

Creates N validator identities under DIR (default ./devnet), a genesis that stakes and funds them
and a faucet, and runs them as N 'peerverse start' processes on 127.0.0.1 (TCP ports from P,
default 7600; APIs on P+100...). Prints how to point other peers and the CLI at the network, then
runs until Ctrl-C. Running it again on the same DIR restarts the same chain.`,
  space: `Usage: peerverse space create NAME [--private] [--width M] [--depth M] [--cell M] [--name DISPLAY] [--data DIR] [--json]
       peerverse space join ID [--name DISPLAY] [--avatar CID]
       peerverse space leave ID
       peerverse space list
       peerverse space say ID TEXT
       peerverse space who ID
       peerverse space chat ID [--limit N]
       peerverse space objects ID
       peerverse space place ID --model CID --at X,Y,Z [--object OBJECT_ID]
       peerverse space remove ID OBJECT_ID
       peerverse space policy ID [--editor DID ...] [--no-editor DID ...] [--ban DID ...] [--unban DID ...]
                                 [--mute DID ...] [--unmute DID ...] [--kick DID ...]
                                 [--member DID ...] [--no-member DID ...]

A space is a shared 3D place with no server: its id is the CID of its signed descriptor, and the
peers in it keep its chat and objects. The running peer stays in the spaces it joined (across
restarts) until 'space leave'. A private space encrypts everything end to end to its members;
its owner adds them with --member (and removing one with --no-member rotates the key).
The owner's policy names editors, and bans, mutes and kicks (every honest peer enforces it).`,
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
    'no-relay-server': { type: 'boolean' },
    genesis: { type: 'string' }
  })
  if (values.help === true) return out(HELP.start)
  const dir = resolve(values.data ?? DEFAULT_DATA_DIR)
  const overrides: PartialConfig = {
    listen: values.listen,
    announce: values.announce,
    bootstrap: values.bootstrap,
    api: values['no-api'] === true ? false : values.api,
    dht: { mode: values['dht-mode'] as DhtMode | undefined },
    relay: { server: values['no-relay-server'] === true ? false : undefined },
    ledger: { genesis: values.genesis == null ? undefined : resolve(values.genesis) }
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
    out(JSON.stringify({ event: 'ready', peerId: node.peerId, did: node.did, addresses: node.addresses(), api: api?.url ?? null, dataDir: dir, chain: node.ledger.chainId, url: api?.clientUrl ?? null }))
  } else {
    out('peerverse peer running')
    out(`  peer id:  ${node.peerId}`)
    out(`  did:      ${node.did}`)
    for (const a of node.addresses()) out(`  listen:   ${a}`)
    out(`  chain:    ${node.ledger.chainId} at height ${node.ledger.state.height}${node.ledger.isValidator ? ' (validating)' : ''}`)
    if (api != null) out(`  api:      ${api.url} (token in ${resolve(dir, 'api-token')})`)
    if (api != null) out(`  open:     ${api.clientUrl}`)
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

function mib (n: number): string {
  return (n / (1024 * 1024)).toFixed(1)
}

/** Adds one file through the API (streamed); returns its CID. */
async function addFile (api: ApiClient, path: string, name: string | undefined, pin: boolean): Promise<{ cid: string, size: number }> {
  const query = new URLSearchParams({ pin: String(pin), ...(name != null ? { name } : {}) })
  const body = Readable.toWeb(createReadStream(path)) as unknown as BodyInit
  const res = await ApiClient.check(await api.raw('POST', `/api/v0/content/add?${query.toString()}`, { body, headers: { 'content-type': 'application/octet-stream' } }))
  return await res.json() as { cid: string, size: number }
}

/** Adds a directory tree bottom-up; returns the directory's CID. */
async function addTree (api: ApiClient, path: string, name: string | undefined, pin: boolean): Promise<{ cid: string, size: number }> {
  const info = await lstat(path)
  if (info.isSymbolicLink()) throw new Error(`${path} is a symbolic link; add what it points to`)
  if (info.isFile()) return await addFile(api, path, name, pin)
  if (!info.isDirectory()) throw new Error(`${path} is not a file or directory`)
  const entries: Array<{ name: string, cid: string }> = []
  for (const child of (await readdir(path)).sort()) {
    const childInfo = await lstat(join(path, child))
    if (childInfo.isSymbolicLink()) continue
    const { cid } = await addTree(api, join(path, child), undefined, false)
    entries.push({ name: child, cid })
  }
  return await api.request<{ cid: string, size: number }>('POST', '/api/v0/content/directory', { entries, name, pin })
}

async function cmdAdd (args: string[]): Promise<void> {
  const { values, positionals } = parse(args, { name: { type: 'string' }, 'no-pin': { type: 'boolean' } })
  if (values.help === true) return out(HELP.add)
  if (positionals.length !== 1) throw new UsageError('add takes one file or directory')
  const path = resolve(positionals[0])
  try {
    await stat(path)
  } catch {
    throw new UsageError(`${positionals[0]} does not exist`)
  }
  const api = await client(values)
  const result = await addTree(api, path, values.name ?? positionals[0].replace(/\/+$/, '').split('/').pop(), values['no-pin'] !== true)
  if (values.json === true) return out(JSON.stringify(result))
  out(result.cid)
}

interface FetchLine {
  progress?: { bytes: number, total: number, peers: number, received: number }
  done?: boolean
  error?: string
  message?: string
  cid?: string
  kind?: 'file' | 'directory'
  size?: number
  fetchedBlocks?: number
}

/** Writes a fetched (local) CID to `path`: a file through a temporary name, or a directory tree. */
async function writeOut (api: ApiClient, cid: string, path: string, kind: 'file' | 'directory'): Promise<void> {
  if (kind === 'directory') {
    await mkdir(path, { recursive: true })
    const { entries } = await api.request<{ entries: Array<{ name: string, cid: string }> }>('GET', `/api/v0/content/ls/${cid}`)
    for (const e of entries) {
      if (e.name.includes('/') || e.name === '.' || e.name === '..' || e.name === '' || e.name.includes('\0')) throw new Error(`refusing unsafe name ${JSON.stringify(e.name)} in ${cid}`)
      const stat = await api.request<{ kind: 'file' | 'directory' }>('GET', `/api/v0/content/stat/${e.cid}`)
      await writeOut(api, e.cid, join(path, e.name), stat.kind)
    }
    return
  }
  const tmp = `${path}.partial`
  const res = await ApiClient.check(await api.raw('GET', `/content/${cid}`))
  if (res.body == null) throw new Error('empty answer')
  try {
    await pipeline(Readable.fromWeb(res.body as never), createWriteStream(tmp))
    await rename(tmp, path)
  } catch (err) {
    await rm(tmp, { force: true })
    throw err
  }
}

async function cmdGet (args: string[]): Promise<void> {
  const { values, positionals } = parse(args, { output: { type: 'string', short: 'o' } })
  if (values.help === true) return out(HELP.get)
  if (positionals.length !== 1) throw new UsageError('get takes one CID')
  const cid = positionals[0]
  const api = await client(values)
  const res = await ApiClient.check(await api.raw('POST', '/api/v0/content/fetch', { body: JSON.stringify({ cid }), headers: { 'content-type': 'application/json' } }))
  const tty = process.stderr.isTTY && values.json !== true
  const started = Date.now()
  let done: FetchLine | undefined
  let buffer = ''
  for await (const chunk of (res.body as unknown as AsyncIterable<Uint8Array>)) {
    buffer += Buffer.from(chunk).toString('utf8')
    let nl: number
    while ((nl = buffer.indexOf('\n')) >= 0) {
      const line = JSON.parse(buffer.slice(0, nl)) as FetchLine
      buffer = buffer.slice(nl + 1)
      if (line.error != null) throw new Error(`${line.error}: ${line.message ?? ''}`)
      if (line.done === true) done = line
      if (line.progress != null && tty) {
        const p = line.progress
        const rate = p.received / Math.max((Date.now() - started) / 1000, 0.001)
        process.stderr.write(`\r  ${mib(p.bytes)} / ${mib(p.total)} MiB  ${mib(rate)} MiB/s  ${p.peers} peer${p.peers === 1 ? '' : 's'}   `)
      }
    }
  }
  if (tty) process.stderr.write('\n')
  if (done?.kind == null) throw new Error('the peer ended the fetch without an answer')
  const path = resolve(values.output ?? cid)
  await writeOut(api, cid, path, done.kind)
  if (values.json === true) return out(JSON.stringify({ cid, path, kind: done.kind, size: done.size, fetchedBlocks: done.fetchedBlocks }))
  out(`${cid} -> ${path} (${done.size ?? 0} bytes)`)
}

async function cmdPin (args: string[]): Promise<void> {
  const { values, positionals } = parse(args, { name: { type: 'string' } })
  if (values.help === true) return out(HELP.pin)
  if (positionals.length !== 1) throw new UsageError('pin takes one CID')
  const info = await (await client(values)).request<{ cid: string, size: number }>('POST', '/api/v0/content/pin', { cid: positionals[0], name: values.name })
  if (values.json === true) return out(JSON.stringify(info))
  out(`pinned ${info.cid} (${info.size} bytes)`)
}

async function cmdUnpin (args: string[]): Promise<void> {
  const { values, positionals } = parse(args, {})
  if (values.help === true) return out(HELP.pin)
  if (positionals.length !== 1) throw new UsageError('unpin takes one CID')
  const { unpinned } = await (await client(values)).request<{ unpinned: boolean }>('POST', '/api/v0/content/unpin', { cid: positionals[0] })
  if (values.json === true) return out(JSON.stringify({ unpinned }))
  out(unpinned ? `unpinned ${positionals[0]}` : `${positionals[0]} was not pinned`)
}

async function cmdLs (args: string[]): Promise<void> {
  const { values } = parse(args, {})
  if (values.help === true) return out(HELP.ls)
  const { pins } = await (await client(values)).request<{ pins: Array<{ cid: string, size: number, name?: string }> }>('GET', '/api/v0/content/pins')
  if (values.json === true) return out(JSON.stringify(pins))
  if (pins.length === 0) out('  (nothing pinned)')
  for (const p of pins) out(`${p.cid}  ${p.size}${p.name != null ? `  ${p.name}` : ''}`)
}

async function cmdGc (args: string[]): Promise<void> {
  const { values } = parse(args, {})
  if (values.help === true) return out(HELP.gc)
  const result = await (await client(values)).request<{ removed: number, freed: number }>('POST', '/api/v0/content/gc', {})
  if (values.json === true) return out(JSON.stringify(result))
  out(`removed ${result.removed} blocks, freed ${result.freed} bytes`)
}

interface EntryView { id: string, author: string, seq: number, ts: number, kind: string, text?: string, name?: string, attachments?: string[], to?: string, likes?: number, cursor?: string }

async function cmdPost (args: string[]): Promise<void> {
  const { values, positionals } = parse(args, { attach: { type: 'string', multiple: true }, 'reply-to': { type: 'string' } })
  if (values.help === true) return out(HELP.post)
  if (positionals.length !== 1) throw new UsageError('post takes one TEXT (quote it)')
  const api = await client(values)
  const attachments: string[] = []
  for (const file of values.attach ?? []) {
    try { await stat(file) } catch { throw new UsageError(`${file} does not exist`) }
    attachments.push((await addTree(api, resolve(file), file.split('/').pop(), true)).cid)
  }
  const body = { text: positionals[0], ...(attachments.length > 0 ? { attachments } : {}) }
  const entry = values['reply-to'] != null
    ? await api.request<EntryView>('POST', '/api/v0/social/reply', { ...body, to: values['reply-to'] })
    : await api.request<EntryView>('POST', '/api/v0/social/post', body)
  if (values.json === true) return out(JSON.stringify(entry))
  out(`posted #${entry.seq} ${entry.id}`)
}

async function cmdFollow (args: string[], verb: 'follow' | 'unfollow' = 'follow'): Promise<void> {
  const { values, positionals } = parse(args, {})
  if (values.help === true) return out(HELP.follow)
  if (positionals.length !== 1) throw new UsageError(`${verb} takes one did`)
  await (await client(values)).request('POST', `/api/v0/social/${verb}`, { did: positionals[0] })
  out(`${verb === 'follow' ? 'following' : 'no longer following'} ${positionals[0]}`)
}

async function cmdFeed (args: string[]): Promise<void> {
  const { values, positionals } = parse(args, { limit: { type: 'string' }, before: { type: 'string' } })
  if (values.help === true) return out(HELP.feed)
  if (positionals.length !== 0) throw new UsageError('feed takes no arguments')
  const query = new URLSearchParams()
  if (values.limit != null) {
    if (!/^\d+$/.test(values.limit)) throw new UsageError('--limit must be a number')
    query.set('limit', values.limit)
  }
  if (values.before != null) query.set('before', values.before)
  const { entries } = await (await client(values)).request<{ entries: EntryView[] }>('GET', `/api/v0/social/feed?${query.toString()}`)
  if (values.json === true) return out(JSON.stringify(entries))
  if (entries.length === 0) out('  (nothing yet: follow someone with peerverse follow DID)')
  for (const e of entries) {
    const who = e.name ?? e.author.slice(0, 20) + '…'
    const extra = [e.kind === 'reply' ? `reply to ${e.to ?? ''}` : '', e.likes != null && e.likes > 0 ? `${e.likes} likes` : '', ...(e.attachments ?? []).map(a => `[${a}]`)].filter(x => x !== '').join('  ')
    out(`${new Date(e.ts).toISOString()}  ${who}: ${e.text ?? ''}${extra !== '' ? '  ' + extra : ''}`)
  }
  if (entries.length > 0) out(`(more: --before ${entries[entries.length - 1].cursor ?? ''})`)
}

async function cmdProfile (args: string[]): Promise<void> {
  const { values, positionals } = parse(args, { name: { type: 'string' }, bio: { type: 'string' }, avatar: { type: 'string' } })
  if (values.help === true) return out(HELP.profile)
  const api = await client(values)
  if (positionals[0] === 'set') {
    if (positionals.length !== 1) throw new UsageError('profile set takes only flags')
    if (values.name == null && values.bio == null && values.avatar == null) throw new UsageError('profile set needs --name, --bio or --avatar')
    const entry = await api.request<EntryView>('POST', '/api/v0/social/profile', { name: values.name, bio: values.bio, avatar: values.avatar })
    return out(values.json === true ? JSON.stringify(entry) : `profile updated (#${entry.seq})`)
  }
  if (positionals.length > 1) throw new UsageError('profile takes at most one did')
  const did = positionals[0] ?? (await api.request<{ did: string }>('GET', '/api/v0/status')).did
  const profile = await api.request<{ did: string, name?: string, bio?: string, avatar?: string, entries: number, forked: boolean }>('GET', `/api/v0/social/profile/${encodeURIComponent(did)}`)
  if (values.json === true) return out(JSON.stringify(profile))
  out(`did:      ${profile.did}`)
  out(`name:     ${profile.name ?? '(none)'}`)
  if (profile.bio != null) out(`bio:      ${profile.bio}`)
  if (profile.avatar != null) out(`avatar:   ${profile.avatar}`)
  out(`entries:  ${profile.entries}${profile.forked ? '  (FORKED: this author signed two different entries at one seq)' : ''}`)
}

function listCommand (verb: 'mute' | 'unmute' | 'block' | 'unblock') {
  return async (args: string[]): Promise<void> => {
    const { values, positionals } = parse(args, {})
    if (values.help === true) return out(HELP.mute)
    if (positionals.length !== 1) throw new UsageError(`${verb} takes one did`)
    await (await client(values)).request('POST', `/api/v0/social/${verb}`, { did: positionals[0] })
    const done = { mute: 'muted', unmute: 'unmuted', block: 'blocked', unblock: 'unblocked' }[verb]
    out(`${done} ${positionals[0]}`)
  }
}

interface TxView { id: string, status: string, height?: number, error?: string, message?: string, receipt?: { created?: string } }

/** Waits until a transaction is final or rejected (or the deadline passes), printing its status. */
async function finish (api: ApiClient, tx: { id: string }, values: { json?: boolean, 'no-wait'?: boolean }, what: string): Promise<void> {
  let status: TxView = { id: tx.id, status: 'pending' }
  if (values['no-wait'] !== true) {
    const deadline = Date.now() + 60_000
    while (Date.now() < deadline) {
      status = await api.request<TxView>('GET', `/api/v0/ledger/tx/${tx.id}`)
      if (status.status === 'committed' || status.status === 'rejected') break
      await new Promise(resolve => setTimeout(resolve, 200))
    }
  }
  if (values.json === true) return out(JSON.stringify(status))
  if (status.status === 'committed') out(`${what}: final at height ${status.height ?? '?'} (tx ${tx.id})${status.receipt?.created != null ? `; id ${status.receipt.created}` : ''}`)
  else if (status.status === 'rejected') throw new Error(`${what} rejected: ${status.error ?? ''}: ${status.message ?? ''} (tx ${tx.id})`)
  else out(`${what}: pending (tx ${tx.id})`)
}

const TX_FLAGS = { fee: { type: 'string' }, 'no-wait': { type: 'boolean' } } as const

function wholeNumber (value: string, name: string): string {
  if (!/^\d{1,19}$/.test(value)) throw new UsageError(`${name} must be a whole number of units, got ${JSON.stringify(value)}`)
  return value
}

async function cmdBalance (args: string[]): Promise<void> {
  const { values, positionals } = parse(args, {})
  if (values.help === true) return out(HELP.balance)
  if (positionals.length > 1) throw new UsageError('balance takes at most one address')
  const b = await (await client(values)).request<{ address: string, balance: string, stake: string, nonce: number, height: number }>('GET', `/api/v0/ledger/balance/${encodeURIComponent(positionals[0] ?? '')}`)
  if (values.json === true) return out(JSON.stringify(b))
  out(`${b.balance}${b.stake !== '0' ? ` (+ ${b.stake} staked)` : ''}  at height ${b.height}  ${b.address}`)
}

async function cmdPay (args: string[]): Promise<void> {
  const { values, positionals } = parse(args, TX_FLAGS)
  if (values.help === true) return out(HELP.pay)
  if (positionals.length !== 2) throw new UsageError('pay takes ADDRESS AMOUNT')
  const api = await client(values)
  const tx = await api.request<{ id: string }>('POST', '/api/v0/ledger/pay', { to: positionals[0], amount: wholeNumber(positionals[1], 'AMOUNT'), fee: values.fee == null ? undefined : wholeNumber(values.fee, '--fee') })
  await finish(api, tx, values, `paid ${positionals[1]} to ${positionals[0]}`)
}

async function cmdAsset (args: string[]): Promise<void> {
  const { values, positionals } = parse(args, { ...TX_FLAGS, content: { type: 'string' }, name: { type: 'string' } })
  if (values.help === true) return out(HELP.asset)
  const api = await client(values)
  if (positionals[0] === 'mint' && positionals.length === 1) {
    if (values.content == null || values.name == null) throw new UsageError('asset mint needs --content CID and --name NAME')
    const tx = await api.request<{ id: string }>('POST', '/api/v0/ledger/asset/mint', { content: values.content, name: values.name })
    return await finish(api, tx, values, `minted ${values.name}`)
  }
  if (positionals[0] === 'transfer' && positionals.length === 3) {
    const tx = await api.request<{ id: string }>('POST', '/api/v0/ledger/asset/transfer', { asset: positionals[1], to: positionals[2] })
    return await finish(api, tx, values, `transferred ${positionals[1]}`)
  }
  throw new UsageError('usage: peerverse asset mint --content CID --name NAME | asset transfer ASSET_ID ADDRESS')
}

async function cmdAssets (args: string[]): Promise<void> {
  const { values, positionals } = parse(args, {})
  if (values.help === true) return out(HELP.assets)
  const { assets } = await (await client(values)).request<{ assets: Array<{ id: string, name: string, content: string }> }>('GET', `/api/v0/ledger/assets/${encodeURIComponent(positionals[0] ?? '')}`)
  if (values.json === true) return out(JSON.stringify(assets))
  if (assets.length === 0) out('  (none)')
  for (const a of assets) out(`${a.id}  ${a.name}  content ${a.content}`)
}

async function cmdParcel (args: string[]): Promise<void> {
  const { values, positionals } = parse(args, { ...TX_FLAGS, space: { type: 'string' }, x: { type: 'string' }, y: { type: 'string' }, w: { type: 'string' }, h: { type: 'string' } })
  if (values.help === true) return out(HELP.parcel)
  const api = await client(values)
  if (positionals[0] === 'claim' && positionals.length === 1) {
    if (values.space == null || values.x == null || values.y == null || values.w == null || values.h == null) throw new UsageError('parcel claim needs --space --x --y --w --h')
    const n = (v: string, name: string): number => Number(wholeNumber(v, name))
    const tx = await api.request<{ id: string }>('POST', '/api/v0/ledger/parcel/claim', { space: values.space, x: n(values.x, '--x'), y: n(values.y, '--y'), w: n(values.w, '--w'), h: n(values.h, '--h') })
    return await finish(api, tx, values, `claimed ${values.w}x${values.h} at ${values.x},${values.y} in ${values.space}`)
  }
  if (positionals[0] === 'transfer' && positionals.length === 3) {
    const tx = await api.request<{ id: string }>('POST', '/api/v0/ledger/parcel/transfer', { parcel: positionals[1], to: positionals[2] })
    return await finish(api, tx, values, `transferred parcel ${positionals[1]}`)
  }
  throw new UsageError('usage: peerverse parcel claim --space S --x X --y Y --w W --h H | parcel transfer PARCEL_ID ADDRESS')
}

async function cmdParcels (args: string[]): Promise<void> {
  const { values, positionals } = parse(args, {})
  if (values.help === true) return out(HELP.parcel)
  const { parcels } = await (await client(values)).request<{ parcels: Array<{ id: string, space: string, x: number, y: number, w: number, h: number }> }>('GET', `/api/v0/ledger/parcels/${encodeURIComponent(positionals[0] ?? '')}`)
  if (values.json === true) return out(JSON.stringify(parcels))
  if (parcels.length === 0) out('  (none)')
  for (const p of parcels) out(`${p.id}  ${p.space}  ${p.w}x${p.h} at ${p.x},${p.y}`)
}

async function cmdTx (args: string[]): Promise<void> {
  const { values, positionals } = parse(args, {})
  if (values.help === true) return out(HELP.tx)
  if (positionals.length !== 1) throw new UsageError('tx takes one transaction id')
  const status = await (await client(values)).request<TxView>('GET', `/api/v0/ledger/tx/${encodeURIComponent(positionals[0])}`)
  if (values.json === true) return out(JSON.stringify(status))
  if (status.status === 'committed') out(`committed at height ${status.height ?? '?'}`)
  else if (status.status === 'rejected') out(`rejected: ${status.error ?? ''}: ${status.message ?? ''}`)
  else out(status.status)
}

async function cmdFaucet (args: string[]): Promise<void> {
  const { values, positionals } = parse(args, TX_FLAGS)
  if (values.help === true) return out(HELP.faucet)
  const api = await client(values)
  const tx = await api.request<{ id: string }>('POST', '/api/v0/ledger/faucet', positionals[0] != null ? { to: positionals[0] } : {})
  await finish(api, tx, values, 'faucet')
}

async function cmdChain (args: string[]): Promise<void> {
  const { values } = parse(args, {})
  if (values.help === true) return out(HELP.chain)
  const s = await (await client(values)).request<{ chain: string, height: number, validators: Array<{ id: string, power: number }>, validator: boolean, mempool: number }>('GET', '/api/v0/ledger/status')
  if (values.json === true) return out(JSON.stringify(s))
  out(`chain:      ${s.chain}`)
  out(`height:     ${s.height}`)
  out(`validator:  ${s.validator ? 'yes' : 'no'}`)
  out(`mempool:    ${s.mempool}`)
  out('validators:')
  for (const v of s.validators) out(`  ${v.id}  power ${v.power}`)
}

async function cmdDevnet (args: string[]): Promise<void> {
  const { values, positionals } = parse(args, { validators: { type: 'string' }, dir: { type: 'string' }, 'base-port': { type: 'string' } })
  if (values.help === true) return out(HELP.devnet)
  if (positionals.length !== 0) throw new UsageError('devnet takes only flags')
  const n = Number(values.validators ?? '4')
  if (!Number.isSafeInteger(n) || n < 1 || n > 16) throw new UsageError('--validators must be 1..16')
  const base = Number(values['base-port'] ?? '7600')
  if (!Number.isSafeInteger(base) || base < 1024 || base > 65000) throw new UsageError('--base-port must be 1024..65000')
  const dir = resolve(values.dir ?? 'devnet')
  await mkdir(dir, { recursive: true })
  const dids: string[] = []
  const peerIds: string[] = []
  for (let i = 0; i < n; i++) {
    const id = await initIdentity(join(dir, `v${i}`))
    dids.push(id.did)
    peerIds.push(peerIdFromPrivateKey(id.peerKey).toString())
  }
  const genesisPath = join(dir, GENESIS_FILE)
  try {
    await stat(genesisPath)
  } catch {
    await writeFile(genesisPath, genesisJson(devnetGenesis(dids)))
  }
  const addr = (i: number): string => `/ip4/127.0.0.1/tcp/${base + i}/p2p/${peerIds[i]}`
  const procs = dids.map((_, i) => spawn(process.execPath, [
    process.argv[1], 'start', '--data', join(dir, `v${i}`), '--listen', `/ip4/127.0.0.1/tcp/${base + i}`,
    '--api', `127.0.0.1:${base + 100 + i}`, '--dht-mode', 'server', '--no-relay-server', '--genesis', genesisPath,
    ...(i === 0 ? [] : ['--bootstrap', addr(0)])
  ], { stdio: ['ignore', 'ignore', 'inherit'] }))
  out(`devnet of ${n} validators running (chain in ${genesisPath})`)
  for (let i = 0; i < n; i++) out(`  v${i}: ${addr(i)}  api 127.0.0.1:${base + 100 + i}  data ${join(dir, `v${i}`)}`)
  out('Join it with a peer of your own (it follows the chain and can submit transactions):')
  out(`  peerverse start --genesis ${genesisPath} --bootstrap ${addr(0)} --data ./my-peer`)
  out(`  peerverse faucet --data ./my-peer && peerverse balance --data ./my-peer`)
  out(`Or ask a validator: peerverse chain --data ${join(dir, 'v0')}`)
  out('Press Ctrl-C to stop.')
  await new Promise<void>(resolve => {
    let stopping = false
    const stop = (): void => {
      if (stopping) return
      stopping = true
      for (const p of procs) p.kill('SIGTERM')
    }
    process.on('SIGINT', stop)
    process.on('SIGTERM', stop)
    let left = procs.length
    for (const p of procs) p.on('exit', () => { if (--left === 0) resolve() })
  })
}

interface SpaceInfo { id: string, name: string, owner: string, private: boolean, members: number, objects: number, grid: { width: number, depth: number, cell: number } }

async function cmdSpace (args: string[]): Promise<void> {
  const { values, positionals } = parse(args, {
    private: { type: 'boolean' },
    width: { type: 'string' },
    depth: { type: 'string' },
    cell: { type: 'string' },
    name: { type: 'string' },
    avatar: { type: 'string' },
    limit: { type: 'string' },
    model: { type: 'string' },
    at: { type: 'string' },
    object: { type: 'string' },
    editor: { type: 'string', multiple: true },
    'no-editor': { type: 'string', multiple: true },
    ban: { type: 'string', multiple: true },
    unban: { type: 'string', multiple: true },
    mute: { type: 'string', multiple: true },
    unmute: { type: 'string', multiple: true },
    kick: { type: 'string', multiple: true },
    member: { type: 'string', multiple: true },
    'no-member': { type: 'string', multiple: true }
  })
  if (values.help === true || positionals.length === 0) return out(HELP.space)
  const [verb, id, ...rest] = positionals
  const api = await client(values)
  const json = values.json === true
  const show = (s: SpaceInfo): void => {
    if (json) return out(JSON.stringify(s))
    out(`${s.id}\n  ${s.name}${s.private ? ' (private)' : ''}, ${s.grid.width}x${s.grid.depth} m, owner ${s.owner}\n  ${s.members} here, ${s.objects} objects`)
  }
  const needId = (): string => {
    if (id == null) throw new UsageError(`space ${verb} needs a space id`)
    return id
  }
  const n = (v: string | undefined, name: string): number | undefined => v == null ? undefined : Number(wholeNumber(v, name))
  switch (verb) {
    case 'create': {
      if (id == null) throw new UsageError('space create needs a NAME')
      return show(await api.request<SpaceInfo>('POST', '/api/v0/space/create', { name: [id, ...rest].join(' '), private: values.private === true, width: n(values.width, '--width'), depth: n(values.depth, '--depth'), cell: n(values.cell, '--cell'), displayName: values.name }))
    }
    case 'join': return show(await api.request<SpaceInfo>('POST', '/api/v0/space/join', { space: needId(), name: values.name, avatar: values.avatar }))
    case 'leave': await api.request('POST', '/api/v0/space/leave', { space: needId() }); return out(`left ${id ?? ''}`)
    case 'list': {
      const { spaces } = await api.request<{ spaces: SpaceInfo[] }>('GET', '/api/v0/space')
      if (json) return out(JSON.stringify(spaces))
      if (spaces.length === 0) out('  (none)')
      for (const s of spaces) out(`${s.id}  ${s.name}${s.private ? ' (private)' : ''}  ${s.members} here`)
      return
    }
    case 'say': {
      if (rest.length === 0) throw new UsageError('space say needs ID and TEXT')
      const c = await api.request<{ id: string }>('POST', '/api/v0/space/say', { space: needId(), text: rest.join(' ') })
      return out(json ? JSON.stringify(c) : c.id)
    }
    case 'who': {
      const { members } = await api.request<{ members: Array<{ did: string, name: string, position: number[], near: boolean }> }>('GET', `/api/v0/space/${encodeURIComponent(needId())}/who`)
      if (json) return out(JSON.stringify(members))
      for (const m of members) out(`${m.did}  ${m.name === '' ? '-' : m.name}  at ${m.position.map(x => x.toFixed(1)).join(',')}${m.near ? '  near' : ''}`)
      return
    }
    case 'chat': {
      const q = values.limit == null ? '' : `?limit=${wholeNumber(values.limit, '--limit')}`
      const { chat } = await api.request<{ chat: Array<{ author: string, text: string, ts: number }> }>('GET', `/api/v0/space/${encodeURIComponent(needId())}/chat${q}`)
      if (json) return out(JSON.stringify(chat))
      for (const c of chat) out(`${new Date(c.ts).toISOString()}  ${c.author.slice(0, 16)}…  ${c.text}`)
      return
    }
    case 'objects': {
      const { objects } = await api.request<{ objects: Array<{ id: string, model: string, position: number[] }> }>('GET', `/api/v0/space/${encodeURIComponent(needId())}/objects`)
      if (json) return out(JSON.stringify(objects))
      if (objects.length === 0) out('  (none)')
      for (const o of objects) out(`${o.id}  ${o.model}  at ${o.position.join(',')}`)
      return
    }
    case 'place': {
      if (values.model == null || values.at == null) throw new UsageError('space place needs --model CID and --at X,Y,Z')
      const at = values.at.split(',').map(Number)
      if (at.length !== 3 || !at.every(Number.isFinite)) throw new UsageError('--at must be X,Y,Z')
      const r = await api.request<{ id: string }>('POST', '/api/v0/space/object/place', { space: needId(), model: values.model, position: at, id: values.object })
      return out(r.id)
    }
    case 'remove': {
      if (rest.length !== 1) throw new UsageError('space remove needs ID and OBJECT_ID')
      await api.request('POST', '/api/v0/space/object/remove', { space: needId(), id: rest[0] })
      return out(`removed ${rest[0]}`)
    }
    case 'policy': {
      const p = await api.request<Record<string, unknown>>('POST', '/api/v0/space/policy', {
        space: needId(),
        addEditors: values.editor,
        removeEditors: values['no-editor'],
        ban: values.ban,
        unban: values.unban,
        mute: values.mute,
        unmute: values.unmute,
        kick: values.kick,
        addMembers: values.member,
        removeMembers: values['no-member']
      })
      return out(JSON.stringify(p, null, json ? undefined : 2))
    }
  }
  throw new UsageError(`unknown space command ${JSON.stringify(verb)} (see peerverse space --help)`)
}

const COMMANDS: Record<string, (args: string[]) => Promise<void>> = {
  space: cmdSpace,
  devnet: cmdDevnet,
  balance: cmdBalance,
  pay: cmdPay,
  asset: cmdAsset,
  assets: cmdAssets,
  parcel: cmdParcel,
  parcels: cmdParcels,
  tx: cmdTx,
  faucet: cmdFaucet,
  chain: cmdChain,
  post: cmdPost,
  follow: async args => { await cmdFollow(args, 'follow') },
  unfollow: async args => { await cmdFollow(args, 'unfollow') },
  feed: cmdFeed,
  profile: cmdProfile,
  mute: listCommand('mute'),
  unmute: listCommand('unmute'),
  block: listCommand('block'),
  unblock: listCommand('unblock'),
  add: cmdAdd,
  get: cmdGet,
  pin: cmdPin,
  unpin: cmdUnpin,
  ls: cmdLs,
  gc: cmdGc,
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
