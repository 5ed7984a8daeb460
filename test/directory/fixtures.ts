/**
 * Directory test fixtures: owners with deterministic keys (from a seed) and their proof of work,
 * public or private space descriptors, and listings signed field by field, so a test can make the
 * records an honest owner makes and the ones a forger or a spammer would.
 */
import { didFromPublicKey } from '../../src/identity/did.ts'
import { ed25519KeyFromSeed, type Ed25519Key } from '../../src/identity/ed25519.ts'
import { signRecord } from '../../src/identity/record.ts'
import { createDescriptor, type Descriptor } from '../../src/space/records.ts'
import { LISTING_TYPE, solveListingWork, type ListingPayload } from '../../src/directory/index.ts'
import { seeded } from '../helpers/random.ts'

export interface Owner { key: Ed25519Key, did: string, work: Uint8Array }

/** An owner from a seed, with its proof of work solved (about half a second each). */
export async function owner (seed: number): Promise<Owner> {
  const key = ed25519KeyFromSeed(seeded(seed).bytes(32))
  const did = didFromPublicKey(key.publicKey)
  return { key, did, work: await solveListingWork(did) }
}

/** An owner whose proof of work was never solved (zero bytes: a spammer's). */
export function lazyOwner (seed: number): Owner {
  const key = ed25519KeyFromSeed(seeded(seed).bytes(32))
  return { key, did: didFromPublicKey(key.publicKey), work: new Uint8Array(8) }
}

export async function descriptor (o: Owner, name: string, priv = false): Promise<Descriptor> {
  return await createDescriptor(o.key, { name, private: priv, created: 1_700_000_000_000 })
}

/** A listing signed by `signer` as given, with no check (forgeries included). */
export async function signListing (signer: Owner, d: Descriptor, fields: Partial<ListingPayload> = {}): Promise<Uint8Array> {
  const payload: ListingPayload = {
    space: d.id,
    descriptor: d.bytes,
    description: 'a place',
    tags: ['test'],
    thumbnail: '',
    present: 1,
    addrs: [],
    seq: 1,
    ts: Date.now(),
    work: signer.work,
    ...fields
  }
  return (await signRecord(signer.key, LISTING_TYPE, payload)).bytes
}
