/**
 * Which store sublevel holds which chain, so one peer's ledger data is never read as another
 * chain's. Data dirs made before chains had sublevels of their own hold their one chain in the
 * `ledger` sublevel; it stays there: the first chain a data dir runs keeps `ledger` (recorded in
 * the `ledger-chains` sublevel), and every other chain gets `ledger-c-<chain id>`. A `ledger`
 * sublevel with no record is claimed by the chain of its first block, or, holding no block, by the
 * chain that opens it first. Runs anywhere (only sublevels).
 */
import { ChainStore } from './chain.ts'
import type { BytesSublevel } from '../store/store.ts'

/** The sublevel of the first chain a data dir ran (and of every data dir made before this record). */
export const FIRST_CHAIN_SUBLEVEL = 'ledger'
/** The sublevel that records which chain holds FIRST_CHAIN_SUBLEVEL. */
export const CHAINS_SUBLEVEL = 'ledger-chains'
const FIRST_KEY = 'first'

/** The sublevel name of chain `chain` when it is not the data dir's first chain. */
export function chainSublevelName (chain: string): string {
  return `ledger-c-${chain}`
}

/**
 * Picks (and records) the sublevel for `chain`; `sublevel(name)` hands out the store's sublevel of
 * that name (each taken once per store), `chains` is the CHAINS_SUBLEVEL.
 */
export async function chainSublevel (chain: string, chains: BytesSublevel, sublevel: (name: string) => BytesSublevel): Promise<BytesSublevel> {
  const recorded = await chains.get(FIRST_KEY)
  let first = recorded == null ? undefined : new TextDecoder().decode(recorded)
  if (first == null) {
    const legacy = sublevel(FIRST_CHAIN_SUBLEVEL)
    const block = await new ChainStore(legacy).getBlock(1).catch(() => undefined)
    first = block?.block.header.chain ?? chain
    await chains.put(FIRST_KEY, new TextEncoder().encode(first), { sync: true } as Record<string, unknown>)
    return first === chain ? legacy : sublevel(chainSublevelName(chain))
  }
  return sublevel(first === chain ? FIRST_CHAIN_SUBLEVEL : chainSublevelName(chain))
}
