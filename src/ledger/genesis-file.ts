/**
 * Node-only: the genesis file on disk. Reads a chain's genesis.json, or writes a new
 * single-validator devnet one on a peer's first start; the rules (what a genesis is, how it is
 * written and parsed) are genesis.ts's, which runs anywhere.
 */
import { readFile, rename, writeFile } from 'node:fs/promises'
import { devnetGenesis, genesisJson, GenesisError, parseGenesis } from './genesis.ts'
import type { Genesis } from './state.ts'

/** Reads a genesis file, or creates a single-validator devnet one (for `did`) when `create` and absent. */
export async function loadGenesis (path: string, options: { createFor?: string } = {}): Promise<Genesis> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || options.createFor == null) throw new GenesisError(`cannot read genesis ${path}: ${(err as Error).message}`)
    const g = devnetGenesis([options.createFor])
    await writeFile(path + '.tmp', genesisJson(g))
    await rename(path + '.tmp', path)
    return g
  }
  return parseGenesis(text, path)
}
