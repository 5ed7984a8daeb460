/**
 * Node-only: which chain this peer follows, decided before its ledger is built. In order: a genesis
 * file given (`--genesis`); a join code (`--join`: dial its peers, fetch the genesis by its CID over
 * the content swarm, which checks every block against its CID); the network this data dir
 * remembers (DIR/network.json, written by a join); a genesis.json already in the data dir (our own
 * devnet); bootstrap peers with no `--devnet` (ask them their chain by the handshake: all that
 * answer must agree, then join it as a code would); else a new single-validator devnet of our own,
 * so a peer alone still works. A joined network's genesis is written to DIR/genesis.json with its
 * exact bytes, and remembered, only once everything about it checked out.
 */
import { readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import { CID } from 'multiformats/cid'
import { GENESIS_FILE, GenesisError, parseGenesis } from '../ledger/genesis.ts'
import { loadGenesisFile, writeGenesisFile, type GenesisFile } from '../ledger/genesis-file.ts'
import { checkLinkPeer, InvalidLinkError, linkPeerId, parseLink, type Link } from '../net/links.ts'
import { HANDSHAKE_TIMEOUT_MS, type NetworkIdService, type NetworkName } from './network-id.ts'

/** The data dir's record of the network it joined. */
export const NETWORK_FILE = 'network.json'
/** How long a join may take: reaching the peers, asking their chain, fetching the genesis. */
export const JOIN_TIMEOUT_MS = 30_000
/** Largest genesis file fetched from peers. */
export const MAX_GENESIS_BYTES = 1024 * 1024
/** Peers remembered from a join at most. */
export const MAX_REMEMBERED_PEERS = 8
/** Pause between rounds of asking peers that did not answer yet. */
export const JOIN_RETRY_MS = 500

/** A join that could not finish: says which peers were tried and what each did. */
export class JoinError extends Error {
  name = 'JoinError'
}

/** This peer already follows another network than the one asked for. */
export class NetworkMismatchError extends Error {
  name = 'NetworkMismatchError'
}

/** A peer's handshake named one chain while the genesis its CID names is another chain's. */
export class ChainClaimError extends Error {
  name = 'ChainClaimError'
}

/** What DIR/network.json holds. */
export interface RememberedNetwork extends NetworkName {
  /** Peers to start from (the join's), used as bootstrap addresses on every start. */
  peers: string[]
}

export async function readNetworkFile (dataDir: string): Promise<RememberedNetwork | undefined> {
  let text: string
  try {
    text = await readFile(join(dataDir, NETWORK_FILE), 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
  let v: RememberedNetwork
  try {
    v = JSON.parse(text)
  } catch (err) {
    throw new JoinError(`${join(dataDir, NETWORK_FILE)} is not JSON (${(err as Error).message}); remove it to start afresh`)
  }
  if (typeof v?.genesis !== 'string' || typeof v.chain !== 'string' || !Array.isArray(v.peers)) throw new JoinError(`${join(dataDir, NETWORK_FILE)} is not a network record`)
  // Only addresses a link could carry (a multiaddr ending in /p2p/<peer id>) become bootstrap addresses.
  const peers = v.peers.filter(p => { try { checkLinkPeer(p); return true } catch { return false } })
  return { genesis: v.genesis, chain: v.chain, peers: peers.slice(0, MAX_REMEMBERED_PEERS) }
}

async function writeNetworkFile (dataDir: string, n: RememberedNetwork): Promise<void> {
  const path = join(dataDir, NETWORK_FILE)
  await writeFile(path + '.tmp', JSON.stringify({ genesis: n.genesis, chain: n.chain, peers: n.peers.slice(0, MAX_REMEMBERED_PEERS) }, null, 2) + '\n', { flush: true })
  await rename(path + '.tmp', path)
}

/** Parses a join code: a `join` link (InvalidLinkError otherwise). */
export function parseJoinCode (code: string): Link {
  const link = parseLink(code)
  if (link.kind !== 'join') throw new InvalidLinkError(`a join code names a network (join=<genesis CID>), this link names ${link.kind}`)
  if (link.peers.length === 0) throw new InvalidLinkError('a join code carries at least one peer')
  return link
}

/** What joining needs of the node: dialling, the handshake and the content swarm. */
export interface JoinPorts {
  dial: (addr: string, options: { signal: AbortSignal }) => Promise<unknown>
  networkId: NetworkIdService
  cat: (cid: string, options: { signal: AbortSignal }) => AsyncIterable<Uint8Array>
}

/** Peers' answers: a name, no chain yet, or the error that reaching them gave. */
type Answers = Map<string, { name?: NetworkName | null, error?: string }>

function describe (answers: Answers): string {
  return [...answers].map(([addr, a]) => `${addr}: ${a.name != null ? `chain ${a.name.chain} (genesis ${a.name.genesis})` : a.name === null ? 'has no chain yet' : a.error ?? 'no answer'}`).join('; ')
}

/** Waits `ms`, or less if `signal` fires. */
async function pause (ms: number, signal: AbortSignal): Promise<void> {
  await new Promise<void>(resolve => {
    const done = (): void => { clearTimeout(t); signal.removeEventListener('abort', done); resolve() }
    const t = setTimeout(done, ms)
    signal.addEventListener('abort', done, { once: true })
  })
}

/** Asks each peer its network, round after round until one answers with a chain (or `enough` says so) or the signal fires. */
async function askPeers (ports: JoinPorts, peers: string[], signal: AbortSignal, enough: (a: Answers) => boolean): Promise<Answers> {
  const answers: Answers = new Map(peers.map(p => [p, {}]))
  while (!signal.aborted) {
    await Promise.all(peers.filter(p => answers.get(p)?.name == null).map(async addr => {
      try {
        await ports.dial(addr, { signal })
        const name = await ports.networkId.ask(linkPeerId(addr), { signal: AbortSignal.any([signal, AbortSignal.timeout(HANDSHAKE_TIMEOUT_MS)]) })
        answers.set(addr, { name })
      } catch (err) {
        answers.set(addr, { error: `${(err as Error).name}: ${(err as Error).message}` })
      }
    }))
    if (enough(answers)) return answers
    await pause(JOIN_RETRY_MS, signal)
  }
  return answers
}

/** Fetches and checks a genesis by CID from the swarm; `claimed` is the chain peers said it names. */
async function fetchGenesis (ports: JoinPorts, cid: string, claimed: NetworkName[], signal: AbortSignal): Promise<GenesisFile> {
  const chunks: Uint8Array[] = []
  let size = 0
  for await (const chunk of ports.cat(cid, { signal })) {
    size += chunk.length
    if (size > MAX_GENESIS_BYTES) throw new JoinError(`the genesis ${cid} is over ${MAX_GENESIS_BYTES} bytes`)
    chunks.push(chunk)
  }
  const bytes = new Uint8Array(size)
  let at = 0
  for (const c of chunks) { bytes.set(c, at); at += c.length }
  let genesis
  try {
    genesis = parseGenesis(new TextDecoder().decode(bytes), `genesis ${cid}`)
  } catch (err) {
    if (err instanceof GenesisError) throw new JoinError(`the content ${cid} is not a genesis: ${err.message}`)
    throw err
  }
  const liar = claimed.find(n => n.genesis === cid && n.chain !== genesis.chain)
  if (liar != null) throw new ChainClaimError(`a peer said genesis ${cid} is chain ${liar.chain}, but it names chain ${genesis.chain}`)
  return { genesis, bytes }
}

/**
 * Joins the network named `target` (a genesis CID; undefined: the one every answering peer is on)
 * through `peers`: JoinError after `timeoutMs` saying which peers were tried and why.
 */
export async function fetchNetwork (ports: JoinPorts, target: string | undefined, peers: string[], options: { timeoutMs?: number, signal?: AbortSignal } = {}): Promise<GenesisFile & { name: NetworkName }> {
  const timeoutMs = options.timeoutMs ?? JOIN_TIMEOUT_MS
  const signal = AbortSignal.any([AbortSignal.timeout(timeoutMs), ...(options.signal == null ? [] : [options.signal])])
  const named = (a: Answers): NetworkName[] => [...a.values()].map(x => x.name).filter((n): n is NetworkName => n != null)
  let answers: Answers
  if (target == null) {
    answers = await askPeers(ports, peers, signal, a => named(a).length > 0)
    const names = named(answers)
    if (names.length === 0) throw new JoinError(`no peer told its chain within ${timeoutMs} ms; tried ${describe(answers)}`)
    if (new Set(names.map(n => n.genesis)).size > 1) throw new JoinError(`the bootstrap peers are on different chains: ${describe(answers)}; pick one with --join CODE (peerverse invite on a peer of that chain)`)
    target = names[0].genesis
  } else {
    // A code's peers need only be reachable: the genesis comes from whoever holds it.
    answers = await askPeers(ports, peers, signal, a => [...a.values()].some(x => x.name !== undefined))
    if (![...answers.values()].some(x => x.name !== undefined)) throw new JoinError(`no peer of the code answered within ${timeoutMs} ms; tried ${describe(answers)}`)
  }
  try {
    const file = await fetchGenesis(ports, target, named(answers), signal)
    return { ...file, name: { genesis: target, chain: file.genesis.chain } }
  } catch (err) {
    if ((err as Error).name === 'ChainClaimError' || (err as Error).name === 'JoinError') throw err
    throw new JoinError(`could not fetch the genesis ${target} from ${describe(answers)}: ${(err as Error).name}: ${(err as Error).message}`)
  }
}

/** The chain a peer runs, as resolved on start. */
export interface ResolvedNetwork extends GenesisFile {
  /** Whether a network was configured (else this is our default devnet). */
  configured: boolean
}

export interface ResolveOptions {
  dataDir: string
  /** A genesis file given by path. */
  genesisPath: string | null
  /** A join code given on start. */
  join?: Link
  /** Bootstrap addresses given (config). */
  bootstrap: string[]
  /** Force a devnet of our own. */
  devnet: boolean
  remembered?: RememberedNetwork
  /** Our user, the validator of a new devnet. */
  did: string
  timeoutMs?: number
  signal?: AbortSignal
}

async function exists (path: string): Promise<boolean> {
  try { await stat(path); return true } catch { return false }
}

/** Decides this peer's chain (see the module comment); writes genesis.json and network.json only for a join that checked out. */
export async function resolveNetwork (ports: JoinPorts, o: ResolveOptions): Promise<ResolvedNetwork> {
  const genesisPath = join(o.dataDir, GENESIS_FILE)
  if (o.genesisPath != null) return { ...await loadGenesisFile(o.genesisPath), configured: true }
  if (o.join != null) {
    if (o.remembered != null && o.remembered.genesis !== o.join.target) throw new NetworkMismatchError(`this data dir follows network ${o.remembered.genesis} (chain ${o.remembered.chain}), not ${o.join.target}; use a fresh --data dir to join another network`)
    if (o.remembered == null) return await joinAndRemember(ports, o.dataDir, o.join.target, o.join.peers, o)
  }
  if (o.remembered != null) {
    if (o.devnet) throw new NetworkMismatchError(`this data dir follows network ${o.remembered.genesis} (chain ${o.remembered.chain}); a devnet of your own needs a fresh --data dir`)
    return { ...await loadGenesisFile(genesisPath), configured: true }
  }
  if (await exists(genesisPath) || o.devnet || o.bootstrap.length === 0) {
    return { ...await loadGenesisFile(genesisPath, { createFor: o.did }), configured: false }
  }
  return await joinAndRemember(ports, o.dataDir, undefined, o.bootstrap, o)
}

/** Fetches a network through `peers` and, all checked, writes its genesis and remembers it. */
export async function joinAndRemember (ports: JoinPorts, dataDir: string, target: string | undefined, peers: string[], o: { timeoutMs?: number, signal?: AbortSignal } = {}): Promise<ResolvedNetwork> {
  const got = await fetchNetwork(ports, target, peers, o)
  const genesisPath = join(dataDir, GENESIS_FILE)
  // A devnet of our own that was here stays on disk beside the joined chain's genesis.
  if (await exists(genesisPath)) {
    const old = await loadGenesisFile(genesisPath).catch(() => undefined)
    // A chain's ledger data is kept under its chain id: another genesis under the id this data dir
    // already runs would be read as that chain's (and fail to replay), so it is refused first.
    if (old != null && old.genesis.chain === got.genesis.chain && Buffer.compare(old.bytes, got.bytes) !== 0) {
      throw new NetworkMismatchError(`the network ${got.name.genesis} names chain ${got.genesis.chain}, the chain id this data dir already runs with another genesis; use a fresh --data dir to join it`)
    }
    if (old != null) await rename(genesisPath, join(dataDir, `genesis.${old.genesis.chain}.json`))
    else await rm(genesisPath)
  }
  await writeGenesisFile(genesisPath, got.bytes)
  await writeNetworkFile(dataDir, { ...got.name, peers: peers.filter(p => multiaddr(p).getComponents().some(c => c.name === 'p2p')) })
  return { genesis: got.genesis, bytes: got.bytes, configured: true }
}

/** Whether `cid` names the same network as `other` (CIDs compared as v1). */
export function sameNetwork (cid: string, other: string): boolean {
  try { return CID.parse(cid).toV1().equals(CID.parse(other).toV1()) } catch { return false }
}
