/**
 * The ledger capability's public face: a blockchain with BFT finality (Tendermint-style rounds over
 * stake-weighted validators) for money, assets and land parcels. `ledger(init)(components)` builds
 * the service; it reaches the network only through the ports it is given, keeps its chain in the
 * store sublevel it is given, and tells the world through the events in LEDGER_EVENTS.
 * Other capabilities ask it through narrow interfaces (a space asks `Parcels`).
 */
import { LedgerService } from './service.ts'
import type { LedgerComponents, LedgerInit } from './types.ts'

export { LEDGER_EVENTS, type LedgerComponents, type LedgerEvents, type LedgerInit, type LedgerStatus, type Parcels } from './types.ts'

/** Builds the ledger service (js-libp2p style: settings first, then what it runs on). */
export function ledger (init: LedgerInit = {}): (components: LedgerComponents) => LedgerService {
  return components => new LedgerService(init, components)
}

export { LedgerService, type TxStatus, COMMIT_PAUSE_MS, MAX_TXS_PER_BLOCK } from './service.ts'
export { NotValidatorError } from './consensus-channel.ts'
export { LedgerHaltedError, PERSIST_RETRY_MS, type HaltInfo } from './halt.ts'
export { consensusProtocol, ledgerTopic, mempoolProtocol, SYNC_PROTOCOL, type LedgerTopic } from './wire.ts'
export { devnetGenesis, faucetDid, faucetKey, FAUCET_GRANT, GENESIS_FILE, genesisJson, GenesisError, parseGenesis } from './genesis.ts'
export type { Genesis, Parcel, Receipt } from './state.ts'
export {
  decodeSpaceValue, InvalidSpaceRecordError, MAX_GRANTS_PER_SPACE, MAX_LAND_PRICE, MAX_SPACE_RECORD_BYTES, NotGrantedError, NotSpaceOwnerError,
  OutsideSpaceError, PriceAboveLimitError, TooManyGrantsError, UnknownGrantError, UnknownSpaceError, type Grant, type LandSpace
} from './land.ts'
export type { Tx, TxOp } from './tx.ts'
export type { StoredBlock } from './chain.ts'
