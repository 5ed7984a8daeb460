/**
 * The chain a node follows and the ledger that runs it. The ledger needs its genesis when it is
 * built, and the genesis may have to come from peers, so the node starts its network and content
 * first, then this resolves the chain (join.ts), names it by its genesis CID (network-id.ts),
 * builds the ledger on that chain's own store sublevel (chain-sublevel.ts) and starts it. A peer
 * running the default devnet (no network configured) may join a network at runtime: its ledger
 * is stopped and a new one built on the joined chain. A peer that follows a configured network
 * never changes chains by itself.
 */
import { addGenesis, type NetworkIdService, type NetworkName, type NetworkStatus } from './network-id.ts'
import { joinAndRemember, NetworkMismatchError, parseJoinCode, resolveNetwork, sameNetwork, type JoinPorts, type RememberedNetwork, type ResolvedNetwork } from './join.ts'
import { ledger, type LedgerComponents, type LedgerService } from '../ledger/index.ts'
import { chainSublevel, CHAINS_SUBLEVEL } from '../ledger/chain-sublevel.ts'
import type { Link } from '../net/links.ts'
import type { BytesSublevel, Store } from '../store/store.ts'
import type { NodeConfig } from './config.ts'

/** The ledger is not built yet (the node has not started). */
export class NoChainYetError extends Error {
  name = 'NoChainYetError'
}

export interface NodeChainInit extends JoinPorts {
  config: NodeConfig
  store: Store
  join?: Link
  remembered?: RememberedNetwork
  /** How long joining may take (default JOIN_TIMEOUT_MS). */
  timeoutMs?: number
  content: Parameters<typeof addGenesis>[0]
  ledgerComponents: Omit<LedgerComponents, 'store' | 'genesis'>
  /** A ledger was built (forward its events). */
  onLedger: (ledger: LedgerService) => void
  onJoined: (detail: NetworkName & { devnet: boolean }) => void
}

/** What a runtime join did. */
export interface JoinResult extends NetworkName {
  /** Whether the ledger moved to the joined chain now (false: it was on it already). */
  switched: boolean
}

export class NodeChain {
  private readonly init: NodeChainInit
  private current?: LedgerService
  private readonly sublevels = new Map<string, BytesSublevel>()
  private busy: Promise<unknown> = Promise.resolve()
  private started = false
  /** The chain the current ledger runs. */
  private resolved?: ResolvedNetwork

  constructor (init: NodeChainInit) {
    this.init = init
  }

  get networkId (): NetworkIdService { return this.init.networkId }

  get ledger (): LedgerService {
    if (this.current == null) throw new NoChainYetError('the ledger is built when the node starts')
    return this.current
  }

  /** Starts the handshake, resolves the chain (joining it if need be) and starts its ledger. */
  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    const { config } = this.init
    await this.init.networkId.start()
    const resolved = await resolveNetwork(this.init, {
      dataDir: config.dataDir,
      genesisPath: config.ledger.genesis,
      join: this.init.join,
      bootstrap: config.bootstrap,
      devnet: config.ledger.devnet,
      remembered: this.init.remembered,
      did: this.init.ledgerComponents.identity.did,
      timeoutMs: this.init.timeoutMs
    })
    await this.run(resolved)
  }

  async stop (): Promise<void> {
    this.started = false
    await this.busy.catch(() => {})
    await this.current?.stop()
    await this.init.networkId.stop()
  }

  /** The network part of status. */
  networkStatus (): NetworkStatus {
    return this.init.networkId.status()
  }

  private sublevel (name: string): BytesSublevel {
    let sub = this.sublevels.get(name)
    if (sub == null) {
      sub = this.init.store.sublevel(name)
      this.sublevels.set(name, sub)
    }
    return sub
  }

  /** Names the chain by its genesis CID, builds its ledger on its own sublevel and starts it. */
  private async run (resolved: ResolvedNetwork): Promise<void> {
    const cid = await addGenesis(this.init.content, resolved.bytes)
    const remembered = this.init.remembered
    if (resolved.configured && remembered != null && !sameNetwork(remembered.genesis, cid) && this.current == null && this.init.config.ledger.genesis == null) {
      throw new NetworkMismatchError(`the genesis in ${this.init.config.dataDir} is ${cid}, not the remembered network ${remembered.genesis}`)
    }
    const chain = resolved.genesis.chain
    const store = await chainSublevel(chain, this.sublevel(CHAINS_SUBLEVEL), name => this.sublevel(name))
    const l = ledger()({ ...this.init.ledgerComponents, store, genesis: resolved.genesis })
    this.init.onLedger(l)
    await l.start()
    this.current = l
    this.resolved = resolved
    this.init.networkId.setOwn({ genesis: cid, chain }, resolved.configured)
    this.init.onJoined({ genesis: cid, chain, devnet: !resolved.configured })
  }

  /**
   * Joins the network of a join code at runtime: a peer on the default devnet switches its ledger
   * to it; one that follows another configured network gets NetworkMismatchError.
   */
  async join (code: string, options: { signal?: AbortSignal } = {}): Promise<JoinResult> {
    const link = parseJoinCode(code)
    const task = this.busy.then(async () => {
      const own = this.init.networkId.own
      if (own != null && sameNetwork(own.genesis, link.target)) return { ...own, switched: false }
      if (this.init.networkId.configured) throw new NetworkMismatchError(`this peer follows network ${own?.genesis ?? '?'} (chain ${own?.chain ?? '?'}); joining ${link.target} needs a fresh data dir`)
      const resolved = await joinAndRemember(this.init, this.init.config.dataDir, link.target, link.peers, { signal: options.signal, timeoutMs: this.init.timeoutMs })
      const old = this.current
      const before = this.resolved
      this.current = undefined
      await old?.stop()
      try {
        await this.run(resolved)
      } catch (err) {
        // The old chain goes on rather than none.
        if (before != null) await this.run(before)
        throw err
      }
      const now = this.init.networkId.own as NetworkName
      return { ...now, switched: true }
    })
    this.busy = task.catch(() => {})
    return await task
  }
}
