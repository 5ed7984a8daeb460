// The wallet's light client: every balance, asset and parcel the wallet shows is checked here, in
// the browser, against the validators' signed commit (src/ledger/light.ts, the code the peer runs
// too), so a peer that lies about them is caught. What it trusts is said in light.ts: the chain and
// its genesis as first seen here (pinned in this browser's storage) and the validators' majority.
import {
  decodeAccountValue, GenesisChangedError, genesisTrust, MAX_LIGHT_CLIENT_STEPS, validatorsHash, verifyHeaderAt, verifyLightClientProof,
  type BlockHeader, type SignedHeader, type TrustedSet, type Validator
} from '../../../src/ledger/light.ts'
import type { StateProof } from '../../../src/ledger/proof.ts'
import * as dagCbor from '@ipld/dag-cbor'
import type { Api } from '../api.ts'

/** Keys one check proves at most (the account, and the assets and parcels the peer lists): one request each. */
export const MAX_WALLET_PROOFS = 256
/** Headers one check asks the peer for at most (the moves of trust to every height its proofs are at). */
export const MAX_WALLET_HEADER_FETCHES = 2 * MAX_LIGHT_CLIENT_STEPS

/** Where the pinned genesis set and the last trusted set of each chain are kept. */
const STORAGE_PREFIX = 'peerverse.light.'

/** The peer lists an asset or parcel as ours that the chain says is not (or a balance the proof does not give). */
export class ProofMismatchError extends Error {
  name = 'ProofMismatchError'
}

/** The peer lists more assets and parcels than one check proves (MAX_WALLET_PROOFS). */
export class TooManyToProveError extends Error {
  name = 'TooManyToProveError'
}

/** The peer's proofs are at more heights than one check follows (MAX_WALLET_HEADER_FETCHES headers). */
export class TooManyHeadersError extends Error {
  name = 'TooManyHeadersError'
}

/** What the wallet shows, as proven: the balance, and which of the listed assets and parcels are ours. */
export interface Proven { height: number, balance: string }

/** The check's state, as the hook `window.peerverse.wallet()` gives it. */
export interface WalletCheck { verified: boolean, height: number | null, error?: string, message?: string }

interface Pinned { genesis: string, trusted: TrustedSet }

function fromBase64 (s: string): Uint8Array {
  const bin = atob(s)
  const out = new Uint8Array(bin.length)
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i)
  return out
}

/** Where the chain this wallet follows is kept: the first it checked, so a peer cannot pass off another. */
const CHAIN_KEY = 'peerverse.light-chain'

function load (chain: string): Pinned | null {
  try {
    const raw = localStorage.getItem(STORAGE_PREFIX + chain)
    return raw == null ? null : JSON.parse(raw) as Pinned
  } catch { return null }
}

function save (p: Pinned): void {
  try { localStorage.setItem(STORAGE_PREFIX + p.trusted.chain, JSON.stringify(p)) } catch {}
}

export interface LightClient {
  /** Proves our account, and each asset and parcel listed as ours; throws a named error when the peer's answers do not check. */
  check: (did: string, assets: ListedAsset[], parcels: ListedParcel[]) => Promise<Proven>
}

/** An asset as the peer lists it: the wallet shows its name and places its content. */
export interface ListedAsset { id: string, name: string, content: string }
/** A parcel as the peer lists it: the wallet shows its space and rectangle. */
export interface ListedParcel { id: string, space: string, x: number, y: number, w: number, h: number }

/**
 * What the peer listed that the proven value does not say, or null: the owner, and for an asset
 * its content and name ([owner, minter, content, name, height]), for a parcel its space and
 * rectangle ([owner, space, x, y, w, h]), as the state commits to them (state.ts).
 */
function differs (value: Uint8Array, did: string, listed: ListedAsset | ListedParcel, kind: 'asset' | 'parcel'): string | null {
  const v = dagCbor.decode(value) as unknown[]
  if (!Array.isArray(v) || v[0] !== did) return 'says another owns it'
  if (kind === 'asset') {
    const a = listed as ListedAsset
    return v[2] === a.content && v[3] === a.name ? null : 'gives it another content or name'
  }
  const p = listed as ListedParcel
  return v[1] === p.space && v[2] === p.x && v[3] === p.y && v[4] === p.w && v[5] === p.h ? null : 'puts it in another place'
}

export function lightClient (api: Pick<Api, 'get'>): LightClient {
  async function signedHeader (height: number): Promise<SignedHeader> {
    const [block, set] = await Promise.all([
      api.get<{ header: BlockHeader, commit: string[] }>(`/api/v0/ledger/block/${height}`),
      api.get<{ validators: Validator[] }>(`/api/v0/ledger/validators/${height}`)
    ])
    return { header: block.header, commit: (block.commit ?? []).map(fromBase64), validators: set.validators }
  }

  /** The trusted set of the peer's chain: pinned here, or the genesis's on first sight (pinned then). */
  async function trusted (): Promise<Pinned> {
    const genesis = await api.get<{ chain: string, accounts: Array<{ id: string, stake?: string }> }>('/api/v0/ledger/genesis')
    // The chain is pinned with its genesis: otherwise a peer would answer for a chain of another
    // name, with validators of its own, and be trusted on first use again.
    let followed: string | null = null
    try { followed = localStorage.getItem(CHAIN_KEY) } catch {}
    if (followed != null && followed !== genesis.chain) throw new GenesisChangedError(`this wallet follows chain ${followed}, and the peer answers for ${String(genesis.chain)} (clear this site's data to follow another chain)`)
    const pinned = load(genesis.chain)
    const first = genesisTrust(genesis, pinned?.genesis)
    if (followed == null) try { localStorage.setItem(CHAIN_KEY, genesis.chain) } catch {}
    if (pinned != null) return pinned
    const p = { genesis: validatorsHash(first.validators), trusted: first }
    save(p)
    return p
  }

  async function check (did: string, assets: ListedAsset[], parcels: ListedParcel[]): Promise<Proven> {
    const listed = [...assets.map(a => ({ kind: 'asset' as const, item: a as ListedAsset | ListedParcel })), ...parcels.map(p => ({ kind: 'parcel' as const, item: p as ListedAsset | ListedParcel }))]
    const keys = [`account/${did}`, ...listed.map(l => `${l.kind}/${l.item.id}`)]
    if (keys.length > MAX_WALLET_PROOFS) throw new TooManyToProveError(`the peer lists ${keys.length - 1} assets and parcels; the wallet proves at most ${MAX_WALLET_PROOFS - 1}`)
    const pinned = await trusted()
    const proofs = await Promise.all(keys.map(async key => await api.get<{ height: number, proof: StateProof }>(`/api/v0/ledger/proof?key=${encodeURIComponent(key)}`)))
    const headers = new Map<number, SignedHeader>()
    let trust = pinned.trusted
    // One budget of headers for the whole check: the peer picks the heights its proofs are at.
    let fetched = 0
    const budgeted = async (height: number): Promise<SignedHeader> => {
      if (++fetched > MAX_WALLET_HEADER_FETCHES) throw new TooManyHeadersError(`the peer's proofs need more than ${MAX_WALLET_HEADER_FETCHES} headers to check`)
      return await signedHeader(height)
    }
    for (const h of [...new Set(proofs.map(p => p.height))].sort((a, b) => a - b)) {
      const r = await verifyHeaderAt(trust, h, budgeted)
      headers.set(h, r.signed)
      if (r.trusted.height > trust.height) trust = r.trusted
    }
    save({ genesis: pinned.genesis, trusted: trust })
    let balance = '0'
    for (const [i, key] of keys.entries()) {
      const { height, proof } = proofs[i]
      const sh = headers.get(height)!
      const value = verifyLightClientProof(sh.header, sh.commit, sh.validators, key, proof)
      if (i === 0) {
        balance = value == null ? '0' : decodeAccountValue(value).balance.toString()
      } else {
        const { kind, item } = listed[i - 1]
        const wrong = value == null ? 'has no such thing' : differs(value, did, item, kind)
        if (wrong != null) throw new ProofMismatchError(`the peer lists ${key} as ours, but the chain ${wrong} at height ${height}`)
      }
    }
    return { height: Math.max(...proofs.map(p => p.height)), balance }
  }

  return { check }
}
