/**
 * What other peers say they see of us (identify's observed address: our address as it reached
 * them) is taken only once several distinct witnesses said the same, and only so many such claims
 * are held at once: one lying peer, or one host under many peer ids, cannot make us believe, or
 * advertise, an address. js-libp2p alone adds every observed address it is told (at most 10,
 * unverified until AutoNAT dials them back); here one needs OBSERVED_ADDRESS_MIN_WITNESSES first.
 */
import type { Multiaddr } from '@multiformats/multiaddr'
import * as L from './limits.ts'

/** Claims (an address, say) each backed by a set of distinct witnesses (a remote IP, say); bounded both ways. */
export class Witnesses {
  private readonly claims = new Map<string, Set<string>>()
  private readonly min: number
  private readonly maxClaims: number

  constructor (min = L.OBSERVED_ADDRESS_MIN_WITNESSES, maxClaims = L.OBSERVED_ADDRESS_MAX_CLAIMS) {
    this.min = min
    this.maxClaims = maxClaims
  }

  /** `witness` says `claim`; true when this made it confirmed (the min-th distinct witness). The oldest claim is forgotten past maxClaims. */
  add (claim: string, witness: string): boolean {
    let set = this.claims.get(claim)
    if (set == null) {
      set = new Set()
      this.claims.set(claim, set)
      while (this.claims.size > this.maxClaims) this.claims.delete(this.claims.keys().next().value as string)
    }
    if (set.size >= this.min || set.has(witness)) return false
    set.add(witness)
    return set.size === this.min
  }

  confirmed (claim: string): boolean { return (this.claims.get(claim)?.size ?? 0) >= this.min }

  get size (): number { return this.claims.size }
}

/** An observed address as a claim: without a trailing `/p2p/<id>` (ours). */
export function observedClaim (ma: Multiaddr): string {
  const cs = ma.getComponents()
  return cs.at(-1)?.name === 'p2p' ? ma.decapsulateCode(421).toString() : ma.toString()
}
