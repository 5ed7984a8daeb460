/**
 * The API's info file in the data dir (where the local API listens, and for which peer) and its
 * token: read by the CLI and tests, which need nothing else of the server, so this module
 * imports only the file names.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { API_INFO_FILE, API_TOKEN_FILE } from './auth.ts'

export interface ApiInfo {
  url: string
  pid: number
  peerId: string
  did: string
}

/** The running API's info and token, from the data dir. */
export async function readApiInfo (dataDir: string): Promise<ApiInfo & { token: string }> {
  const info = JSON.parse(await readFile(join(dataDir, API_INFO_FILE), 'utf8')) as ApiInfo
  const token = (await readFile(join(dataDir, API_TOKEN_FILE), 'utf8')).trim()
  return { ...info, token }
}
