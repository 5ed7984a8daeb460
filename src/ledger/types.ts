/**
 * The ledger capability's settings, components and events: the types its public face (index.ts)
 * exports and its service is built from.
 */
import type { Ed25519Key } from '../identity/ed25519.ts'
import type { DidOf, GossipPort, ProtocolPort, RejectSink } from '../net/ports.ts'
import type { BytesSublevel } from '../store/store.ts'
import type { Timeouts } from './consensus.ts'
import type { HaltInfo } from './halt.ts'
import type { HeightRecord } from './height-record.ts'
import type { Genesis, LedgerState, Parcel, Receipt } from './state.ts'

export interface LedgerInit {
  /** Consensus timeouts (default CometBFT's, consensus.ts DEFAULT_TIMEOUTS). */
  timeouts?: Partial<Timeouts>
  /** Pause after a commit before the next height starts (default COMMIT_PAUSE_MS: none). */
  commitPauseMs?: number
  /** How long a proposer with no transactions waits for one (default EMPTY_BLOCK_WAIT_MS). */
  emptyBlockWaitMs?: number
  /** How long a proposer with a few transactions waits for more (default BLOCK_FILL_WAIT_MS). */
  blockFillWaitMs?: number
  /** How often a node that committed nothing lately asks peers for blocks (default SYNC_INTERVAL_MS). */
  syncIntervalMs?: number
  /** How long our transactions wait to go together in one batch (default TX_BATCH_INTERVAL_MS). */
  txBatchIntervalMs?: number
  /** How often a ledger halted by a failed write tries to write again (default PERSIST_RETRY_MS). */
  persistRetryMs?: number
}

export interface LedgerComponents {
  gossip: GossipPort
  protocols: ProtocolPort
  /** Where input a peer should not have sent is reported. */
  onRejected?: RejectSink
  /** The user did a connected peer acts for (its signed binding): whose consensus stream is whose. */
  didOf: DidOf
  /** Our user: its key signs our transactions, and our votes when we are a validator. */
  identity: { did: string, key: Ed25519Key }
  /** The sublevel that holds the chain (blocks, receipts, evidence, the consensus write-ahead record). */
  store: BytesSublevel
  /** The chain's genesis: it names the chain. */
  genesis: Genesis
}

export interface LedgerEvents {
  /** A block was committed. */
  'ledger:block': CustomEvent<{ height: number, hash: string, txs: number, stateRoot: string, record: HeightRecord }>
  /** One of our own transactions was committed (applied or refused with its fee charged). */
  'ledger:receipt': CustomEvent<Receipt>
  /** A validator signed two different votes for one height, round and step. */
  'ledger:evidence': CustomEvent<{ validator: string, height: number, round: number }>
  /** A write failed: the ledger commits nothing and takes no transaction until writes succeed again. */
  'ledger:halted': CustomEvent<HaltInfo>
  /** Writes succeed again: the ledger goes on from its last committed height. */
  'ledger:resumed': CustomEvent<{ height: number }>
}

/** The names of the ledger's events, as the API lists them. */
export const LEDGER_EVENTS = ['ledger:block', 'ledger:receipt', 'ledger:evidence', 'ledger:halted', 'ledger:resumed'] as const satisfies ReadonlyArray<keyof LedgerEvents>

/** What a space asks the ledger: the land parcels of a space, to decide who may build where. */
export interface Parcels {
  parcelsIn: (space: string) => Parcel[]
}

/** The chain as a peer sees it (GET /api/v0/ledger/status). */
export interface LedgerStatus {
  chain: string
  height: number
  lastBlock: LedgerState['lastBlock']
  validators: LedgerState['validators']
  /** Whether we are one of the validators. */
  validator: boolean
  /** Transactions waiting in our mempool. */
  mempool: number
  /**
   * What back-pressure reads (mempool.ts): waiting transactions a block could take now (each
   * sender's run from its next nonce), peers' not checked yet and how long the oldest of those has
   * waited (ms), and how long the oldest submitted here that a block passed over has waited (ms).
   */
  backlog: { txs: number, bytes: number, unchecked: number, uncheckedWaitMs: number, waitMs: number }
  /** Consensus messages received over direct links and over gossip. */
  consensusReceived: { direct: number, gossip: number, copies: number }
  /** Why the ledger is halted (it cannot write to its store), or null while it runs. */
  halted: HaltInfo | null
  /** Transactions we answered "pending" that no block has committed or refused yet. */
  pendingOwn: number
  /** Peers' transactions the mempool refused, by error name (NonceGapError for a skipped nonce, ...). */
  gossipRefused: Record<string, number>
  /** The last heights this validator committed, with what happened at each (height-record.ts). */
  heights: Array<HeightRecord & { height: number }>
}
