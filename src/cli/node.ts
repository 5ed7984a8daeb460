/**
 * `peerverse` commands about the peer itself and its network: create an identity, run the peer,
 * ask it for its status and peers, dial, look up, gossip, and run a local devnet of validators.
 * Node-only (the CLI is a Node shell over the node and its API).
 */
import { spawn } from 'node:child_process'
import { mkdir, stat, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { ApiServer } from '../api/server.ts'
import { initIdentity } from '../identity/keystore.ts'
import { devnetGenesis, GENESIS_FILE, genesisJson } from '../ledger/genesis.ts'
import type { DhtMode } from '../net/network.ts'
import type { PartialConfig } from '../node/config.ts'
import type { NodeStatus, PeerInfoView } from '../node/node.ts'
import { ledgerState, type LedgerStatusView } from './ledger.ts'
import { client, DEFAULT_DATA_DIR, out, parse, UsageError, type Commands } from './args.ts'

const HELP: Record<string, string> = {
  init: `Usage: peerverse init [--data DIR]

Creates an Ed25519 user key (named by a did:key) and a libp2p peer key in DIR.
Key files are readable by their owner only. An existing key is never overwritten.`,
  start: `Usage: peerverse start [--data DIR] [--listen MULTIADDR ...] [--announce MULTIADDR ...]
                       [--bootstrap MULTIADDR ...] [--api HOST:PORT | --no-api]
                       [--dht-mode server|client|auto] [--no-mdns] [--no-relay-server]
                       [--no-webrtc] [--public]
                       [--join CODE | --genesis FILE | --devnet] [--json]

Runs the peer until SIGINT or SIGTERM. Creates the identity on first run. The data dir and
everything in it are made owner-only. The API token is new on every start: open the new URL.
  --listen      listen address (repeatable); default TCP 7410, WebSocket 7411 and WebRTC.
                A peer holds relay slots while it is not known to be publicly reachable
                (/p2p-circuit in --listen holds one always)
  --announce    address to announce instead of the listen addresses (repeatable)
  --bootstrap   a peer to enter the network through, /.../p2p/<peer id> (repeatable)
  --api         local API address, default 127.0.0.1:7400 (port 0 picks a free one)
  --dht-mode    the WAN DHT: server answers queries; auto (default) does once publicly
                reachable. The LAN DHT (private and loopback addresses) always answers
  --no-mdns     do not look for peers on the LAN by multicast DNS (on by default)
  --no-webrtc   no WebRTC: connections through a relay stay relayed (no hole punching)
  --public      this peer is publicly reachable: it never holds relay slots
  --join        join the network of a join code (peerverse invite on a peer of it): fetches
                its genesis from the code's peers, follows the chain and remembers the network,
                so a plain start later rejoins it
  --genesis     the chain to follow (a genesis file)
  --devnet      a single-validator devnet of your own even with --bootstrap peers
                With none of these: the network this data dir remembers; else the chain of the
                --bootstrap peers (all must agree); else a devnet of your own in DIR/genesis.json
  --json        print one JSON line when ready instead of the text summary`,
  invite: `Usage: peerverse invite [--data DIR] [--json]

Prints a join code for this peer's network (its genesis CID and a few of this peer's addresses)
and the same as a link the browser client opens. On another machine or data dir:
  peerverse start --join CODE`,
  join: `Usage: peerverse join CODE [--data DIR] [--json]

Joins the network of a join code while this peer runs: its peers are dialled, the genesis is
fetched by its CID and checked, the network is remembered, and a peer on a devnet of its own
moves its ledger to the joined chain at once. A peer that already follows a network refuses
(NetworkMismatchError): join another with a fresh data dir and 'peerverse start --join CODE'.`,
  status: `Usage: peerverse status [--data DIR] [--json]

Asks the running peer for its peer id, did, addresses, DHT modes and routing table sizes (WAN and
LAN), whether mDNS is on, and its connected peers.`,
  peers: `Usage: peerverse peers [--data DIR] [--json]`,
  'find-peer': `Usage: peerverse find-peer PEER_ID [--data DIR] [--json]

Looks the peer up through the DHT (not the local cache) and prints its addresses.`,
  connect: `Usage: peerverse connect MULTIADDR [--data DIR]`,
  gossip: `Usage: peerverse gossip publish TOPIC TEXT [--data DIR]
       peerverse gossip subscribe TOPIC [--data DIR]   (prints messages until Ctrl-C)`,
  devnet: `Usage: peerverse devnet [--validators N] [--dir DIR] [--base-port P]

Creates N validator identities under DIR (default ./devnet), a genesis that stakes and funds them
and a faucet, and runs them as N 'peerverse start' processes on 127.0.0.1 (TCP ports from P,
default 7600; APIs on P+100...). Prints how to point other peers and the CLI at the network, then
runs until Ctrl-C. Running it again on the same DIR restarts the same chain.`
}

async function cmdInit (args: string[]): Promise<void> {
  const { values } = parse(args, {})
  if (values.help === true) return out(HELP.init)
  const dir = resolve(values.data ?? DEFAULT_DATA_DIR)
  process.umask(0o077)
  const id = await initIdentity(dir)
  const { ownerOnlyDataDir } = await import('../node/config.ts')
  await ownerOnlyDataDir(dir)
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
    'no-mdns': { type: 'boolean' },
    'no-relay-server': { type: 'boolean' },
    'no-webrtc': { type: 'boolean' },
    public: { type: 'boolean' },
    genesis: { type: 'string' },
    join: { type: 'string' },
    devnet: { type: 'boolean' }
  })
  if (values.help === true) return out(HELP.start)
  const dir = resolve(values.data ?? DEFAULT_DATA_DIR)
  // Owner-only whoever made the dir: nothing this process writes is readable by others.
  process.umask(0o077)
  const overrides: PartialConfig = {
    listen: values.listen,
    announce: values.announce,
    bootstrap: values.bootstrap,
    api: values['no-api'] === true ? false : values.api,
    dht: { mode: values['dht-mode'] as DhtMode | undefined },
    discovery: { mdns: values['no-mdns'] === true ? false : undefined },
    relay: { server: values['no-relay-server'] === true ? false : undefined },
    nat: { webrtc: values['no-webrtc'] === true ? false : undefined, reachability: values.public === true ? 'public' : undefined },
    ledger: { genesis: values.genesis == null ? undefined : resolve(values.genesis), join: values.join, devnet: values.devnet }
  }
  // The node and its API are loaded only here, so the other commands (API clients) start quickly.
  const [{ loadConfig, ownerOnlyDataDir, parseHostPort }, { createNode }, { ApiServer, createApiToken }] =
    await Promise.all([import('../node/config.ts'), import('../node/node.ts'), import('../api/server.ts')])
  const config = await loadConfig(dir, overrides)
  const walked = await ownerOnlyDataDir(dir)
  if (walked.truncated) process.stderr.write(`peerverse: ${dir} holds over ${walked.entries} entries; only those were made owner-only (the dir itself is)\n`)
  const node = await createNode(config)
  let api: ApiServer | undefined
  node.addEventListener('bootstrap:error', evt => {
    process.stderr.write(`peerverse: bootstrap ${evt.detail.address} unreachable (${evt.detail.error}); retrying\n`)
  })
  node.addEventListener('network:mismatch', evt => {
    const { ours, theirs } = evt.detail
    const other = [...new Set(theirs.map(t => `${t.chain} (genesis ${t.genesis})`))].join(', ')
    process.stderr.write(`peerverse: network mismatch: this peer follows chain ${ours.chain} (genesis ${ours.genesis}) but its bootstrap peers follow ${other}; it stays on its own chain. To join theirs (peerverse invite on one of them gives a code): peerverse join CODE while this peer runs a devnet of its own, else a fresh --data dir and start --join CODE\n`)
  })
  node.addEventListener('disk:low', evt => {
    process.stderr.write(`peerverse: low disk: ${formatBytes(evt.detail.free)} free for ${dir} (warning below ${formatBytes(evt.detail.lowDiskBytes)}); free some space before writes fail\n`)
  })
  node.addEventListener('disk:ok', evt => {
    process.stderr.write(`peerverse: disk space back: ${formatBytes(evt.detail.free)} free for ${dir}\n`)
  })
  node.addEventListener('store:writable', evt => {
    process.stderr.write(evt.detail.writable
      ? 'peerverse: the store accepts writes again\n'
      : `peerverse: the store is refusing writes until it has repaired itself: ${evt.detail.error ?? 'a write failed'}\n`)
  })
  if (config.ledger.join != null) process.stderr.write('peerverse: joining the network of the code (fetching its genesis from its peers)\n')
  await node.start()
  for (const a of node.content.status().abandonedDownloads) {
    process.stderr.write(`peerverse: gave up the download of ${a.cid} (${a.reason}); run 'peerverse get ${a.cid}' to try again\n`)
  }
  try {
    if (config.api !== false) {
      const { host, port } = parseHostPort(config.api)
      api = new ApiServer(node, { host, port, token: await createApiToken(dir) })
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
      // Each step runs whatever the one before it did: on a full disk or a failing store a service
      // may fail to save its last state, and the peer still closes its store and exits cleanly.
      let code = 0
      for (const [what, step] of [['api', async () => api?.stop()], ['node', async () => node.stop()]] as const) {
        try {
          await step()
        } catch (err) {
          process.stderr.write(`peerverse: stopping the ${what}: ${(err as Error).message}\n`)
          if (!isStoreFailure(err)) code = 1
        }
      }
      process.exit(code)
    })()
  }
  process.on('SIGINT', () => { shutdown('SIGINT') })
  process.on('SIGTERM', () => { shutdown('SIGTERM') })
  // A rejection nothing handled (a library's background task, a connection closed under it) is
  // written to stderr and the peer stays up: one peer's misbehaviour must not take this one down.
  process.on('unhandledRejection', err => {
    process.stderr.write(`peerverse: unhandled rejection: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
  })
  if (values.json === true) {
    out(JSON.stringify({ event: 'ready', peerId: node.peerId, did: node.did, addresses: node.addresses(), api: api?.url ?? null, dataDir: dir, chain: node.ledger.chainId, genesis: node.status().network.genesis, url: api?.clientUrl ?? null }))
  } else {
    out('peerverse peer running')
    out(`  peer id:  ${node.peerId}`)
    out(`  did:      ${node.did}`)
    for (const a of node.addresses()) out(`  listen:   ${a}`)
    out(`  chain:    ${node.ledger.chainId} at height ${node.ledger.status().height}${node.ledger.isValidator ? ' (validating)' : ''}`)
    out(`  network:  ${node.status().network.genesis}${node.status().network.devnet ? ' (a devnet of your own; peerverse invite gives others a join code)' : ''}`)
    if (api != null) out(`  api:      ${api.url} (this run's token in ${resolve(dir, 'api-token')})`)
    if (api != null) out(`  open:     ${api.clientUrl}`)
    out('Press Ctrl-C to stop.')
  }
}

/** Whether an error is the store failing to persist (a full disk), which a shutdown reports but survives. */
function isStoreFailure (err: unknown): boolean {
  for (let e = err as { name?: string, code?: string, cause?: unknown } | undefined, depth = 0; e != null && depth < 8; e = e.cause as typeof e, depth++) {
    if (e.name === 'StoreWriteError' || e.code === 'LEVEL_IO_ERROR' || e.code === 'LEVEL_DATABASE_NOT_OPEN') return true
  }
  return false
}

/** Bytes as KiB, MiB or GiB. */
function formatBytes (n: number): string {
  if (n >= 1024 ** 3) return `${(n / 1024 ** 3).toFixed(1)} GiB`
  if (n >= 1024 ** 2) return `${(n / 1024 ** 2).toFixed(1)} MiB`
  return `${Math.round(n / 1024)} KiB`
}

/** The reach and connections lines of `peerverse status`. */
export function reachLines (status: Pick<NodeStatus, 'reach' | 'connections'>): string[] {
  const lines: string[] = []
  const r = status.reach
  if (r != null) {
    const short = (id: string): string => `${id.slice(0, 6)}…`
    const relays = r.relays.length === 0 ? '' : `, reachable through ${r.relays.length} relay${r.relays.length === 1 ? '' : 's'} (${r.relays.map(short).join(', ')})`
    const what = r.reachability === 'public' ? 'public' : r.reachability === 'behind-nat' ? 'behind NAT' : 'unknown yet'
    lines.push(`reach:     ${what}${relays}${r.reachability === 'behind-nat' && r.relays.length === 0 ? ', no relay yet: not reachable' : ''}`)
  }
  const c = status.connections
  if (c != null && typeof c === 'object') {
    // WebRTC connections are direct (status counts them in `direct`); the line says how many of them.
    const parts = [`${c.direct} direct${c.webrtc > 0 ? `, ${c.webrtc} of them WebRTC` : ''}`, ...(c.relayed > 0 ? [`${c.relayed} relayed`] : [])]
    lines.push(`connections: ${c.total} (${parts.join('; ')})`)
  }
  return lines
}

/** The network lines of `peerverse status`. */
function printNetwork (status: NodeStatus): void {
  const n = status.network
  if (n == null) return
  out(`network:   ${n.genesis} (chain ${n.chain}${n.devnet ? ', a devnet of your own' : ''}), peers on it ${n.peersOnChain}, on other chains ${n.peersOnOtherChains}`)
}

function printPeers (peers: PeerInfoView[]): void {
  if (peers.length === 0) out('  (none)')
  for (const p of peers) {
    const via = p.connections == null ? '' : `  [${[...new Set(p.connections.map(c => c.transport))].join(', ')}]`
    out(`  ${p.peerId}${p.did != null ? `  ${p.did}` : ''}${via}  ${p.addresses.join(' ')}`)
  }
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
  const store = status.store
  if (store != null) {
    const disk = store.disk == null ? '' : `, ${formatBytes(store.disk.free)} free on its disk`
    out(`store:     ${store.writable ? 'accepting writes' : 'REFUSING WRITES (it repairs itself once it can)'}${disk}`)
    if (!store.writable && store.lastError != null) out(`  last error: ${store.lastError.message}`)
    if (store.disk?.low === true) out(`  warning: low disk, below ${formatBytes(store.disk.lowDiskBytes)} free`)
  }
  printDiscovery(status)
  for (const line of reachLines(status)) out(line)
  out(`peers (${peers.length}):`)
  printPeers(peers)
  const ledger = await api.request<LedgerStatusView>('GET', '/api/v0/ledger/status')
  out(`ledger:    ${ledger.chain} at height ${ledger.height}, ${ledgerState(ledger)}`)
  printNetwork(status)
}

async function cmdInvite (args: string[]): Promise<void> {
  const { values, positionals } = parse(args, {})
  if (values.help === true) return out(HELP.invite)
  if (positionals.length !== 0) throw new UsageError('invite takes only flags')
  const invite = await (await client(values)).request<{ code: string, link: string }>('GET', '/api/v0/network/invite')
  if (values.json === true) return out(JSON.stringify(invite))
  out(invite.code)
  out(`browser: ${invite.link}`)
  out(`On another peer: peerverse start --join '${invite.code}'`)
}

async function cmdJoin (args: string[]): Promise<void> {
  const { values, positionals } = parse(args, {})
  if (values.help === true) return out(HELP.join)
  if (positionals.length !== 1) throw new UsageError('join takes one join code')
  const r = await (await client(values)).request<{ genesis: string, chain: string, switched: boolean }>('POST', '/api/v0/network/join', { link: positionals[0] })
  if (values.json === true) return out(JSON.stringify(r))
  out(r.switched ? `joined chain ${r.chain} (genesis ${r.genesis})` : `already on chain ${r.chain} (genesis ${r.genesis})`)
}

/** The DHTs' modes and routing tables, and mDNS. */
function printDiscovery (status: NodeStatus): void {
  if (status.dht != null) {
    out(`dht:       wan ${status.dht.wan.mode} (${status.dht.wan.peers} in routing table), lan ${status.dht.lan.mode} (${status.dht.lan.peers} in routing table)`)
  }
  if (status.mdns != null) out(`mdns:      ${status.mdns ? 'on' : 'off'}`)
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
    const ws = new WebSocket(await api.eventsUrl())
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
    '--api', `127.0.0.1:${base + 100 + i}`, '--dht-mode', 'server', '--no-mdns', '--no-relay-server', '--genesis', genesisPath,
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

export const nodeCommands: Commands = {
  init: { run: cmdInit, summary: 'create an identity (Ed25519 key, did:key) in a data dir' },
  start: { run: cmdStart, summary: 'run the peer in the foreground until Ctrl-C' },
  invite: { run: cmdInvite, summary: 'print a join code for this peer\'s network (and its browser link)' },
  join: { run: cmdJoin, summary: 'join the network of a join code while this peer runs (a devnet of your own moves to it)' },
  status: { run: cmdStatus, summary: 'show the running peer: ids, addresses, connected peers' },
  peers: { run: cmdPeers, summary: 'list connected peers with their did:key' },
  'find-peer': { run: cmdFindPeer, summary: 'look a peer up through the DHT' },
  connect: { run: cmdConnect, summary: 'dial a multiaddr' },
  gossip: { run: cmdGossip, summary: 'publish or subscribe on a gossip topic' },
  devnet: { run: cmdDevnet, summary: 'run a local network of validators (separate processes on loopback)' }
}
