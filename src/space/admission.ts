/**
 * The price of a new identity in a space: a proof of work bound to the space and the did, as
 * hashcash binds a stamp to its recipient. Keys are free to make, so an author a space does not
 * know yet (not its owner, an editor or a member, nor an author whose messages it already keeps)
 * is heard only with a nonce such that
 *   SHA-256(ADMISSION_DOMAIN ‖ 0 ‖ space ‖ 0 ‖ did ‖ nonce)
 * starts with SPACE_ADMISSION_BITS zero bits. An honest peer finds it once per space and identity
 * (about 2^18 hashes: half a second of this machine's JavaScript) and keeps it; a receiver checks
 * it with one hash. The nonce proves nothing about who sent it and needs no signature: it only
 * helps the did it was made for, whose records are signed anyway.
 */
import { sha256 } from '../identity/hash.ts'

/** Leading zero bits an admission proof's hash has: 2^18 hashes expected to find one. */
export const SPACE_ADMISSION_BITS = 18
/** Bytes of an admission nonce. */
export const ADMISSION_NONCE_BYTES = 8
/** Domain separation of the proof's hash (the `/1` is its version). */
export const ADMISSION_DOMAIN = 'peerverse/space-admission/1'
/** Hashes tried between two yields to the event loop while solving. */
const SOLVE_CHUNK = 16_384

/** An author the space does not know sent no proof of work with its record. */
export class AdmissionRequiredError extends Error { name = 'AdmissionRequiredError' }
/** A proof of work that does not meet SPACE_ADMISSION_BITS for this space and did. */
export class InvalidAdmissionError extends Error { name = 'InvalidAdmissionError' }

const enc = new TextEncoder()

function prefix (space: string, did: string): Uint8Array {
  return enc.encode(`${ADMISSION_DOMAIN}\u0000${space}\u0000${did}`)
}

function leadingZeroBits (h: Uint8Array): number {
  let n = 0
  for (const b of h) {
    if (b === 0) { n += 8; continue }
    return n + Math.clz32(b) - 24
  }
  return n
}

/** Whether `nonce` admits `did` to `space` at `bits` of work. */
export function isAdmitted (space: string, did: string, nonce: Uint8Array, bits = SPACE_ADMISSION_BITS): boolean {
  if (!(nonce instanceof Uint8Array) || nonce.length !== ADMISSION_NONCE_BYTES) return false
  return leadingZeroBits(sha256(prefix(space, did), nonce)) >= bits
}

/** Throws AdmissionRequiredError without a proof, InvalidAdmissionError for one that does not admit `did`. */
export function checkAdmission (space: string, did: string, nonce: Uint8Array | undefined, bits = SPACE_ADMISSION_BITS): void {
  if (nonce == null) throw new AdmissionRequiredError(`${did} is new to ${space} and sent no proof of work`)
  if (!isAdmitted(space, did, nonce, bits)) throw new InvalidAdmissionError(`the proof of work of ${did} does not admit it to ${space}`)
}

/**
 * Finds a nonce admitting `did` to `space` (2^bits hashes expected), yielding to the event loop
 * every SOLVE_CHUNK hashes so a peer goes on working meanwhile. `onTries` reports the count.
 */
export async function solveAdmission (space: string, did: string, options: { bits?: number, signal?: AbortSignal, onTries?: (n: number) => void } = {}): Promise<Uint8Array> {
  const bits = options.bits ?? SPACE_ADMISSION_BITS
  const p = prefix(space, did)
  const nonce = new Uint8Array(ADMISSION_NONCE_BYTES)
  const view = new DataView(nonce.buffer)
  for (let hi = 0; ; hi++) {
    view.setUint32(0, hi)
    for (let lo = 0; lo < 0x1_0000_0000; lo++) {
      view.setUint32(4, lo)
      if (leadingZeroBits(sha256(p, nonce)) >= bits) {
        options.onTries?.(hi * 0x1_0000_0000 + lo + 1)
        return nonce
      }
      if ((lo + 1) % SOLVE_CHUNK === 0) {
        options.signal?.throwIfAborted()
        await new Promise(resolve => setTimeout(resolve, 0))
      }
    }
  }
}
