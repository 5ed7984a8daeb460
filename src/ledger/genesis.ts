/**
 * Genesis rules and the devnet faucet. A chain is named by its genesis: chain id, time and the
 * first accounts (balances and stakes; stake makes validators). The embedded default is a
 * single-validator devnet whose only validator is the local user, created on first start.
 * Reading and writing the file on disk is genesis-file.ts's (Node-only); this runs anywhere.
 *
 * Devnets also fund a faucet: an account whose key is derived from the chain id, so every peer on
 * a devnet can sign faucet transfers to its own user. A faucet key is public by construction:
 * only devnets have one.
 */
import { didFromPublicKey, isDid } from '../identity/did.ts'
import { ed25519KeyFromSeed, type Ed25519Key } from '../identity/ed25519.ts'
import { randomBytes, sha256, toHex } from '../identity/hash.ts'
import { STAKE_PER_POWER, type Genesis } from './state.ts'

export const GENESIS_FILE = 'genesis.json'
/** Units the faucet holds on a new devnet. */
export const FAUCET_SUPPLY = 1_000_000_000_000n
/** Units the faucet gives a user on request (and on a new peer's first start). */
export const FAUCET_GRANT = 1_000_000n
/** Stake each devnet validator starts with. */
export const DEVNET_STAKE = 100n * STAKE_PER_POWER

export class GenesisError extends Error {
  name = 'GenesisError'
}

/** The devnet faucet key of a chain (public: derived from the chain id). */
export function faucetKey (chain: string): Ed25519Key {
  return ed25519KeyFromSeed(sha256(`peerverse/devnet-faucet/${chain}`))
}

export function faucetDid (chain: string): string {
  return didFromPublicKey(faucetKey(chain).publicKey)
}

/** A devnet genesis: the validators (each staked and funded) and the faucet. */
export function devnetGenesis (validators: string[], time = Date.now()): Genesis {
  const chain = `peerverse-devnet-${toHex(randomBytes(4))}`
  return {
    chain,
    time,
    accounts: [
      { id: faucetDid(chain), balance: FAUCET_SUPPLY },
      ...validators.map(id => ({ id, balance: FAUCET_GRANT, stake: DEVNET_STAKE }))
    ]
  }
}

export function genesisJson (g: Genesis): string {
  return JSON.stringify({ chain: g.chain, time: g.time, accounts: g.accounts.map(a => ({ id: a.id, balance: a.balance.toString(), stake: (a.stake ?? 0n).toString() })) }, null, 2) + '\n'
}

export function parseGenesis (text: string, source: string): Genesis {
  let v: { chain?: unknown, time?: unknown, accounts?: unknown }
  try {
    v = JSON.parse(text)
  } catch (err) {
    throw new GenesisError(`${source}: not JSON (${(err as Error).message})`)
  }
  if (typeof v.chain !== 'string' || !/^[a-z0-9-]{1,64}$/.test(v.chain)) throw new GenesisError(`${source}: chain must be 1..64 of a-z, 0-9, -`)
  if (typeof v.time !== 'number' || !Number.isSafeInteger(v.time)) throw new GenesisError(`${source}: time must be an integer (ms)`)
  if (!Array.isArray(v.accounts) || v.accounts.length === 0) throw new GenesisError(`${source}: accounts must be a non-empty list`)
  const accounts = v.accounts.map((a: { id?: unknown, balance?: unknown, stake?: unknown }, i: number) => {
    if (typeof a?.id !== 'string' || !isDid(a.id)) throw new GenesisError(`${source}: accounts[${i}].id must be a did:key`)
    if (typeof a.balance !== 'string' || !/^\d{1,19}$/.test(a.balance)) throw new GenesisError(`${source}: accounts[${i}].balance must be a decimal string`)
    if (a.stake !== undefined && (typeof a.stake !== 'string' || !/^\d{1,19}$/.test(a.stake))) throw new GenesisError(`${source}: accounts[${i}].stake must be a decimal string`)
    return { id: a.id, balance: BigInt(a.balance), stake: BigInt((a.stake as string | undefined) ?? '0') }
  })
  if (!accounts.some(a => a.stake >= STAKE_PER_POWER)) throw new GenesisError(`${source}: no account has stake enough to validate`)
  return { chain: v.chain, time: v.time, accounts }
}
