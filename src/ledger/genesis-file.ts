/**
 * Node-only: the genesis file on disk. Reads a chain's genesis.json, or writes a new
 * single-validator devnet one on a peer's first start, or the exact bytes of a genesis fetched
 * from peers; the rules (what a genesis is, how it is written and parsed) are genesis.ts's, which
 * runs anywhere. A chain's network is named by the CID of these exact bytes, so they are kept as
 * they came.
 */
import { readFile, rename, writeFile } from 'node:fs/promises'
import { devnetGenesis, genesisJson, GenesisError, parseGenesis } from './genesis.ts'
import type { Genesis } from './state.ts'

/** A genesis and the exact bytes of its file. */
export interface GenesisFile {
  genesis: Genesis
  bytes: Uint8Array
}

/** Reads a genesis file, or creates a single-validator devnet one (for `did`) when `createFor` is given and the file is absent. */
export async function loadGenesisFile (path: string, options: { createFor?: string } = {}): Promise<GenesisFile & { created: boolean }> {
  let bytes: Uint8Array
  try {
    bytes = new Uint8Array(await readFile(path))
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || options.createFor == null) throw new GenesisError(`cannot read genesis ${path}: ${(err as Error).message}`)
    const genesis = devnetGenesis([options.createFor])
    bytes = new TextEncoder().encode(genesisJson(genesis))
    await writeGenesisFile(path, bytes)
    return { genesis, bytes, created: true }
  }
  return { genesis: parseGenesis(new TextDecoder().decode(bytes), path), bytes, created: false }
}

/** Reads a genesis file, or creates a single-validator devnet one (for `did`) when `createFor` is given and the file is absent. */
export async function loadGenesis (path: string, options: { createFor?: string } = {}): Promise<Genesis> {
  return (await loadGenesisFile(path, options)).genesis
}

/** Writes a genesis file's exact bytes, synced, replacing the file in one rename. */
export async function writeGenesisFile (path: string, bytes: Uint8Array): Promise<void> {
  await writeFile(path + '.tmp', bytes, { flush: true })
  await rename(path + '.tmp', path)
}
