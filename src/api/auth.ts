/**
 * Node-only: the local API's token and how the CLI knows it speaks to our peer before it sends it.
 * The token is new on every start (the previous one stops working with the process that held it).
 * A peer proves itself without the token leaving either side: the client sends a fresh random
 * nonce to an unauthenticated endpoint, the peer answers HMAC-SHA-256(token, domain, its own URL,
 * nonce), and the client compares in constant time. The URL in the MAC keeps a server on another
 * port from relaying the challenge to the real peer and passing its answer off as its own.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import { rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

export const API_TOKEN_FILE = 'api-token'
export const API_INFO_FILE = 'api.json'
/** The unauthenticated endpoint a peer answers the challenge on (`?nonce=`). */
export const API_PROOF_PATH = '/api/v0/proof'
/** Domain separation: this MAC means "the API peer at URL holds the token", nothing else. */
export const API_PROOF_DOMAIN = 'peerverse-api-proof-v1'
/** Random bytes in a challenge nonce (sent base64url, 43 characters). */
export const API_PROOF_NONCE_BYTES = 32
/** Time the client gives a peer to answer the challenge. */
export const API_PROOF_TIMEOUT_MS = 10_000

const NONCE_RE = new RegExp(`^[A-Za-z0-9_-]{${Math.ceil(API_PROOF_NONCE_BYTES * 4 / 3)}}$`)

/** A challenge nonce that is not 32 random bytes in base64url. */
export class InvalidNonceError extends Error {
  name = 'InvalidNonceError'
}

/** Writes a fresh token for this run of the peer (owner-only, replacing the last one) and returns it. */
export async function createApiToken (dataDir: string): Promise<string> {
  const token = randomBytes(32).toString('base64url')
  const path = join(dataDir, API_TOKEN_FILE)
  await writeFile(path + '.tmp', token + '\n', { mode: 0o600 })
  await rename(path + '.tmp', path)
  return token
}

/** A fresh challenge nonce. */
export function proofNonce (): string {
  return randomBytes(API_PROOF_NONCE_BYTES).toString('base64url')
}

/** The peer's answer to `nonce`, as the API at `url` holding `token` gives it. */
export function apiProof (token: string, url: string, nonce: string): string {
  if (!NONCE_RE.test(nonce)) throw new InvalidNonceError(`nonce must be ${API_PROOF_NONCE_BYTES} random bytes in base64url`)
  return createHmac('sha256', token).update(`${API_PROOF_DOMAIN}\n${url}\n${nonce}`).digest('base64url')
}

/** True when `answer` is the proof for `nonce` from the API at `url` holding `token` (constant time). */
export function checkApiProof (token: string, url: string, nonce: string, answer: unknown): boolean {
  if (typeof answer !== 'string') return false
  const want = Buffer.from(apiProof(token, url, nonce))
  const given = Buffer.from(answer)
  return given.length === want.length && timingSafeEqual(given, want)
}

/**
 * Where a browser cannot send a header, so the token may come as `?token=`: the event and voice WebSockets
 * and GET|HEAD of /content (images, textures, models, audio and video loaded by URL).
 */
export function queryTokenAllowed (method: string, pathname: string, upgrade: boolean): boolean {
  if (upgrade) return pathname === '/api/v0/events' || pathname === '/api/v0/voice/ws'
  return (method === 'GET' || method === 'HEAD') && pathname.startsWith('/content/')
}
