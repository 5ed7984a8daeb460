/**
 * Node configuration: embedded defaults, then `config.json` in the data dir, then flags.
 * Validation is a pure function that names the bad field; nothing starts on a bad config.
 * Node-only where it reads config.json from the data dir and makes the dir owner-only (node:fs).
 */
import { multiaddr } from '@multiformats/multiaddr'
import { chmod, lstat, mkdir, opendir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { DhtMode } from '../net/network.ts'
import { DEFAULT_BALLAST_BYTES } from '../store/disk.ts'
import { LOW_DISK_BYTES } from '../store/store.ts'
import { JOIN_TIMEOUT_MS } from './join.ts'
import { NO_HOLDERS_TIMEOUT_MS } from '../content/swarm-limits.ts'
import { JOIN_TIMEOUT_MS as SPACE_JOIN_TIMEOUT_MS } from '../space/membership.ts'
import { HEARING_RANGE_M, MAX_HEARD_SPEAKERS } from '../voice/hearing.ts'
import { MAX_VOICE_LISTENERS } from '../voice/service.ts'

export const CONFIG_FILE = 'config.json'
export const DEFAULT_TCP_PORT = 7410
export const DEFAULT_WS_PORT = 7411
export const DEFAULT_API_PORT = 7400

export class ConfigError extends Error {
  name = 'ConfigError'
}

export interface NodeConfig {
  /** The data dir: identity, store, API token. */
  dataDir: string
  /** libp2p listen multiaddrs. */
  listen: string[]
  /** Multiaddrs to announce instead of the listen addresses. */
  announce: string[]
  /** Peers to enter the network through. */
  bootstrap: string[]
  /** Local API `host:port`; `false` runs without an API. */
  api: string | false
  dht: { mode: DhtMode }
  /** Finding peers with nothing configured: multicast DNS on the LAN (default on). */
  discovery: { mdns: boolean }
  relay: { server: boolean }
  /**
   * Behind a NAT: `webrtc` upgrades relayed connections to direct ones (hole punching); `stun`
   * answers STUN at our first TCP port while we relay for others; `reachability` is `auto` (found
   * out: relay slots are held while not known public) or told (`public`: never hold a relay slot).
   */
  nat: { webrtc: boolean, stun: boolean, reachability: NatReachability }
  /**
   * Bytes of blocks the store may hold; unpinned blocks are collected near the limit.
   * `noHoldersTimeoutMs`: how long a download looks for a holder before it fails with NoProvidersError.
   */
  content: { maxStoreBytes: number, noHoldersTimeoutMs: number }
  /**
   * The chain to follow: a genesis file, or null for the network this data dir joined (a join code,
   * or the chain the bootstrap peers are on), else a single-validator devnet in DIR/genesis.json.
   * `join` is a join code (`peerverse invite`); `devnet` makes a devnet of our own even with bootstrap peers;
   * `joinTimeoutMs` is how long joining a network may take before it fails with JoinError.
   */
  ledger: { genesis: string | null, join: string | null, devnet: boolean, joinTimeoutMs: number }
  /**
   * Spaces: interest management on (the default) or off (every presence frame to everyone, for comparison);
   * `joinTimeoutMs`: how long joining a space looks for a peer that has it.
   */
  space: { interest: boolean, joinTimeoutMs: number }
  /** Voice: speakers a listener hears at once (the nearest talking) and the hearing range in metres. */
  voice: { maxHeard: number, rangeM: number }
  /** The store: warn below `lowDiskBytes` free on its disk; keep `ballastBytes` of emergency reserve (capped to a share of the disk). */
  store: { lowDiskBytes: number, ballastBytes: number }
  /**
   * The IPFS trustless gateway (GET /ipfs/CID on the API's address): `open: false` (the default)
   * asks for the API token like the API; `open: true` serves without it, read-only, with the same
   * Host and Origin checks.
   */
  gateway: { open: boolean }
}

export type NatReachability = 'auto' | 'public' | 'behind-nat'

export type PartialConfig = Partial<Omit<NodeConfig, 'dht' | 'discovery' | 'relay' | 'nat' | 'content' | 'ledger' | 'space' | 'store' | 'voice' | 'gateway'>> & { gateway?: Partial<NodeConfig['gateway']>, voice?: Partial<NodeConfig['voice']>, store?: Partial<NodeConfig['store']>, dht?: Partial<NodeConfig['dht']>, discovery?: Partial<NodeConfig['discovery']>, relay?: Partial<NodeConfig['relay']>, nat?: Partial<NodeConfig['nat']>, content?: Partial<NodeConfig['content']>, ledger?: Partial<NodeConfig['ledger']>, space?: Partial<NodeConfig['space']> }

/** Default limit on the block store (pinned and cached content). */
/** Bounds of ledger.joinTimeoutMs: long enough to reach a peer and fetch a genesis, short enough that a failed join says so. */
export const MIN_JOIN_TIMEOUT_MS = 1_000
export const MAX_JOIN_TIMEOUT_MS = 600_000

export const DEFAULT_MAX_STORE_BYTES = 8 * 1024 * 1024 * 1024

/** Bounds of content.noHoldersTimeoutMs and space.joinTimeoutMs: long enough to dial a peer and ask it, short enough that a failure says so. */
export const MIN_LOOKUP_TIMEOUT_MS = 1_000
export const MAX_LOOKUP_TIMEOUT_MS = 600_000

export function defaultConfig (dataDir: string): NodeConfig {
  return {
    dataDir,
    listen: [`/ip4/0.0.0.0/tcp/${DEFAULT_TCP_PORT}`, `/ip4/0.0.0.0/tcp/${DEFAULT_WS_PORT}/ws`, '/webrtc'],
    announce: [],
    bootstrap: [],
    api: `127.0.0.1:${DEFAULT_API_PORT}`,
    dht: { mode: 'auto' },
    discovery: { mdns: true },
    relay: { server: true },
    nat: { webrtc: true, stun: true, reachability: 'auto' },
    content: { maxStoreBytes: DEFAULT_MAX_STORE_BYTES, noHoldersTimeoutMs: NO_HOLDERS_TIMEOUT_MS },
    ledger: { genesis: null, join: null, devnet: false, joinTimeoutMs: JOIN_TIMEOUT_MS },
    space: { interest: true, joinTimeoutMs: SPACE_JOIN_TIMEOUT_MS },
    voice: { maxHeard: MAX_HEARD_SPEAKERS, rangeM: HEARING_RANGE_M },
    store: { lowDiskBytes: LOW_DISK_BYTES, ballastBytes: DEFAULT_BALLAST_BYTES },
    gateway: { open: false }
  }
}

/** Merges layers left to right; arrays replace, they do not concatenate. */
export function mergeConfig (base: NodeConfig, ...layers: Array<PartialConfig | undefined>): NodeConfig {
  let out = base
  for (const layer of layers) {
    if (layer == null) continue
    out = {
      ...out,
      ...dropUndefined(layer),
      dht: { ...out.dht, ...dropUndefined(layer.dht ?? {}) },
      discovery: { ...out.discovery, ...dropUndefined(layer.discovery ?? {}) },
      relay: { ...out.relay, ...dropUndefined(layer.relay ?? {}) },
      nat: { ...out.nat, ...dropUndefined(layer.nat ?? {}) },
      content: { ...out.content, ...dropUndefined(layer.content ?? {}) },
      ledger: { ...out.ledger, ...dropUndefined(layer.ledger ?? {}) },
      space: { ...out.space, ...dropUndefined(layer.space ?? {}) },
      voice: { ...out.voice, ...dropUndefined(layer.voice ?? {}) },
      store: { ...out.store, ...dropUndefined(layer.store ?? {}) },
      gateway: { ...out.gateway, ...dropUndefined(layer.gateway ?? {}) }
    } as NodeConfig
  }
  return out
}

function dropUndefined<T extends object> (o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>
}

function checkMultiaddrs (field: string, value: unknown): void {
  if (!Array.isArray(value)) throw new ConfigError(`${field} must be an array of multiaddrs`)
  for (const a of value) {
    if (typeof a !== 'string') throw new ConfigError(`${field}: ${JSON.stringify(a)} is not a multiaddr string`)
    try {
      multiaddr(a)
    } catch (err) {
      throw new ConfigError(`${field}: ${a} is not a valid multiaddr (${(err as Error).message})`)
    }
  }
}

/** Parses `host:port` (IPv6 in brackets); throws ConfigError. */
export function parseHostPort (value: string, field = 'api'): { host: string, port: number } {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]+):(\d{1,5})$/.exec(value)
  if (m == null) throw new ConfigError(`${field} must be host:port, got ${JSON.stringify(value)}`)
  const port = Number(m[2])
  if (port > 65535) throw new ConfigError(`${field}: port ${port} is out of range`)
  return { host: m[1].replace(/^\[|\]$/g, ''), port }
}

/**
 * Whether the API may listen on `host`: a literal loopback address only. A name such as
 * `localhost` may stand for both ::1 and 127.0.0.1, so another process could hold the other one.
 */
export function isLoopbackHost (host: string): boolean {
  if (host === '::1') return true
  const m = /^127\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(host)
  return m != null && m.slice(1).every(n => Number(n) <= 255)
}

/** Checks a whole config; returns it unchanged or throws ConfigError naming the field. */
export function validateConfig (config: NodeConfig): NodeConfig {
  if (typeof config.dataDir !== 'string' || config.dataDir === '') throw new ConfigError('dataDir must be a path')
  checkMultiaddrs('listen', config.listen)
  checkMultiaddrs('announce', config.announce)
  checkMultiaddrs('bootstrap', config.bootstrap)
  for (const a of config.bootstrap) {
    if (!multiaddr(a).getComponents().some(c => c.name === 'p2p')) {
      throw new ConfigError(`bootstrap: ${a} must end in /p2p/<peer id> so the peer can be authenticated`)
    }
  }
  if (config.api !== false) {
    if (typeof config.api !== 'string') throw new ConfigError('api must be host:port or false')
    const { host } = parseHostPort(config.api)
    if (!isLoopbackHost(host)) {
      throw new ConfigError(`api: ${host} is not a loopback address; the local API holds the keys to this peer and listens only on 127.0.0.1 (or another 127.x.y.z) or [::1]`)
    }
  }
  if (!['server', 'client', 'auto'].includes(config.dht?.mode)) throw new ConfigError('dht.mode must be server, client or auto')
  if (typeof config.discovery?.mdns !== 'boolean') throw new ConfigError('discovery.mdns must be true or false')
  if (typeof config.relay?.server !== 'boolean') throw new ConfigError('relay.server must be true or false')
  if (typeof config.nat?.webrtc !== 'boolean') throw new ConfigError('nat.webrtc must be true or false')
  if (typeof config.nat?.stun !== 'boolean') throw new ConfigError('nat.stun must be true or false')
  if (!['auto', 'public', 'behind-nat'].includes(config.nat?.reachability)) throw new ConfigError('nat.reachability must be auto, public or behind-nat')
  const maxStore = config.content?.maxStoreBytes
  if (typeof maxStore !== 'number' || !Number.isSafeInteger(maxStore) || maxStore < 16 * 1024 * 1024) {
    throw new ConfigError('content.maxStoreBytes must be an integer of at least 16 MiB')
  }
  const genesis = config.ledger?.genesis
  if (genesis !== null && (typeof genesis !== 'string' || genesis === '')) throw new ConfigError('ledger.genesis must be a path to a genesis file, or null')
  const joinCode = config.ledger?.join
  if (joinCode !== null && (typeof joinCode !== 'string' || joinCode === '')) throw new ConfigError('ledger.join must be a join code, or null')
  if (typeof config.ledger?.devnet !== 'boolean') throw new ConfigError('ledger.devnet must be true or false')
  if ([genesis !== null, joinCode !== null, config.ledger.devnet].filter(Boolean).length > 1) throw new ConfigError('ledger: give at most one of genesis, join and devnet')
  const joinMs = config.ledger.joinTimeoutMs
  if (typeof joinMs !== 'number' || !Number.isSafeInteger(joinMs) || joinMs < MIN_JOIN_TIMEOUT_MS || joinMs > MAX_JOIN_TIMEOUT_MS) {
    throw new ConfigError(`ledger.joinTimeoutMs must be a whole number of milliseconds from ${MIN_JOIN_TIMEOUT_MS} to ${MAX_JOIN_TIMEOUT_MS}`)
  }
  if (typeof config.gateway?.open !== 'boolean') throw new ConfigError('gateway.open must be true or false')
  if (typeof config.space?.interest !== 'boolean') throw new ConfigError('space.interest must be true or false')
  checkLookupTimeouts(config)
  const { maxHeard, rangeM } = config.voice ?? {}
  if (typeof maxHeard !== 'number' || !Number.isSafeInteger(maxHeard) || maxHeard < 0 || maxHeard > MAX_VOICE_LISTENERS) throw new ConfigError(`voice.maxHeard must be a whole number from 0 to ${MAX_VOICE_LISTENERS}`)
  if (typeof rangeM !== 'number' || !Number.isFinite(rangeM) || rangeM <= 0) throw new ConfigError('voice.rangeM must be a positive number of metres')
  for (const field of ['lowDiskBytes', 'ballastBytes'] as const) {
    const v = config.store?.[field]
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new ConfigError(`store.${field} must be a whole number of bytes`)
  }
  return config
}

/** How long a download looks for holders, and a space join for a peer that has the space. */
function checkLookupTimeouts (config: NodeConfig): void {
  for (const [field, v] of [['content.noHoldersTimeoutMs', config.content.noHoldersTimeoutMs], ['space.joinTimeoutMs', config.space.joinTimeoutMs]] as const) {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < MIN_LOOKUP_TIMEOUT_MS || v > MAX_LOOKUP_TIMEOUT_MS) {
      throw new ConfigError(`${field} must be a whole number of milliseconds from ${MIN_LOOKUP_TIMEOUT_MS} to ${MAX_LOOKUP_TIMEOUT_MS}`)
    }
  }
}

const KNOWN_KEYS = new Set(['listen', 'announce', 'bootstrap', 'api', 'dht', 'discovery', 'relay', 'nat', 'content', 'ledger', 'space', 'store', 'voice', 'gateway'])

/** Reads `config.json` from the data dir, if there is one. */
export async function readConfigFile (dataDir: string): Promise<PartialConfig | undefined> {
  const path = join(dataDir, CONFIG_FILE)
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (err) {
    throw new ConfigError(`${path}: not valid JSON (${(err as Error).message})`)
  }
  if (parsed == null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new ConfigError(`${path}: must be a JSON object`)
  for (const key of Object.keys(parsed)) {
    if (!KNOWN_KEYS.has(key)) throw new ConfigError(`${path}: unknown setting ${JSON.stringify(key)}`)
  }
  return parsed as PartialConfig
}

/** Defaults < config file < overrides, validated. */
export async function loadConfig (dataDir: string, overrides?: PartialConfig): Promise<NodeConfig> {
  return validateConfig(mergeConfig(defaultConfig(dataDir), await readConfigFile(dataDir), overrides))
}

/** Entries `ownerOnlyDataDir` fixes at most (the dir itself, at 0700, already shuts others out of the rest). */
export const MAX_DATA_DIR_WALK_ENTRIES = 100_000
/** Mode of the data dir and every directory in it. */
export const DATA_DIR_MODE = 0o700
/** Mode of every file in the data dir. */
export const DATA_FILE_MODE = 0o600

/**
 * Makes the data dir owner-only whoever made it: creates it 0700 if missing, sets it to 0700, and
 * walks what is inside (not following links, at most `maxEntries` entries) setting directories to
 * 0700 and files to 0600. Returns the entries seen and whether the walk stopped at the bound.
 */
export async function ownerOnlyDataDir (dataDir: string, options: { maxEntries?: number } = {}): Promise<{ entries: number, truncated: boolean }> {
  const maxEntries = options.maxEntries ?? MAX_DATA_DIR_WALK_ENTRIES
  await mkdir(dataDir, { recursive: true, mode: DATA_DIR_MODE })
  await chmod(dataDir, DATA_DIR_MODE)
  let entries = 0
  const dirs = [dataDir]
  for (let dir = dirs.pop(); dir != null; dir = dirs.pop()) {
    let handle
    try {
      handle = await opendir(dir)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue
      throw err
    }
    for await (const entry of handle) {
      // Leaving the loop closes the directory handle.
      if (entries >= maxEntries) return { entries, truncated: true }
      entries++
      const path = join(dir, entry.name)
      try {
        const st = await lstat(path)
        if (st.isSymbolicLink()) continue
        const want = st.isDirectory() ? DATA_DIR_MODE : DATA_FILE_MODE
        if ((st.mode & 0o777) !== want) await chmod(path, want)
        if (st.isDirectory()) dirs.push(path)
      } catch (err) {
        // Gone since it was listed (LevelDB compacting, a .tmp renamed): nothing to fix.
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
      }
    }
  }
  return { entries, truncated: false }
}
