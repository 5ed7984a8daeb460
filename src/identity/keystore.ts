/**
 * The identity files in a data dir: the user's Ed25519 key (named by its did:key) and the libp2p
 * peer key. Both are created once, readable by the owner only, and never overwritten.
 * Node-only: key files on disk (node:fs).
 */
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { constants } from 'node:fs'
import { chmod, mkdir, open, readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { didFromPublicKey } from './did.ts'
import { ed25519KeyFromSeed, generateEd25519Key, type Ed25519Key } from './ed25519.ts'
import { IdentityExistsError, IdentityNotFoundError, InvalidKeyError } from './errors.ts'

export const USER_KEY_FILE = 'identity.json'
export const PEER_KEY_FILE = 'peer.key'
const KEY_FILE_MODE = 0o600

export interface Identity {
  /** The user's signing key. */
  userKey: Ed25519Key
  /** did:key of the user key. */
  did: string
  /** The libp2p key; its peer id names the peer on the network. */
  peerKey: PrivateKey
}

interface UserKeyFile {
  version: 1
  type: 'ed25519'
  did: string
  seed: string
}

async function writeExclusive (path: string, data: Uint8Array | string): Promise<void> {
  let handle
  try {
    handle = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, KEY_FILE_MODE)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new IdentityExistsError(`${path} already exists`)
    throw err
  }
  try {
    await handle.writeFile(data)
    await handle.sync()
  } finally {
    await handle.close()
  }
  await chmod(path, KEY_FILE_MODE)
}

async function exists (path: string): Promise<boolean> {
  try {
    await stat(path)
    return true
  } catch {
    return false
  }
}

/**
 * Creates the identity in `dir` (made if missing). Returns `{ created: false }` with the existing
 * identity when one is already there: a key is never overwritten.
 */
export async function initIdentity (dir: string): Promise<Identity & { created: boolean }> {
  await mkdir(dir, { recursive: true, mode: 0o700 })
  let created = false
  if (!await exists(join(dir, USER_KEY_FILE))) {
    const key = generateEd25519Key()
    const file: UserKeyFile = { version: 1, type: 'ed25519', did: didFromPublicKey(key.publicKey), seed: Buffer.from(key.seed).toString('base64') }
    try {
      await writeExclusive(join(dir, USER_KEY_FILE), JSON.stringify(file, null, 2) + '\n')
      created = true
    } catch (err) {
      if (!(err instanceof IdentityExistsError)) throw err
    }
  }
  if (!await exists(join(dir, PEER_KEY_FILE))) {
    const peerKey = await generateKeyPair('Ed25519')
    try {
      await writeExclusive(join(dir, PEER_KEY_FILE), privateKeyToProtobuf(peerKey))
      created = true
    } catch (err) {
      if (!(err instanceof IdentityExistsError)) throw err
    }
  }
  return { ...await loadIdentity(dir), created }
}

/** Loads the identity from `dir`; IdentityNotFoundError when there is none, InvalidKeyError when damaged. */
export async function loadIdentity (dir: string): Promise<Identity> {
  let userFile: UserKeyFile
  let peerBytes: Uint8Array
  try {
    userFile = JSON.parse(await readFile(join(dir, USER_KEY_FILE), 'utf8'))
    peerBytes = await readFile(join(dir, PEER_KEY_FILE))
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new IdentityNotFoundError(`no identity in ${dir} (run: peerverse init --data ${dir})`)
    if (err instanceof SyntaxError) throw new InvalidKeyError(`${join(dir, USER_KEY_FILE)} is not valid JSON`)
    throw err
  }
  if (userFile?.type !== 'ed25519' || typeof userFile.seed !== 'string') {
    throw new InvalidKeyError(`${join(dir, USER_KEY_FILE)} is not an Ed25519 identity`)
  }
  const userKey = ed25519KeyFromSeed(new Uint8Array(Buffer.from(userFile.seed, 'base64')))
  const did = didFromPublicKey(userKey.publicKey)
  if (did !== userFile.did) throw new InvalidKeyError(`${join(dir, USER_KEY_FILE)}: key does not match its did`)
  let peerKey: PrivateKey
  try {
    peerKey = privateKeyFromProtobuf(peerBytes)
  } catch (err) {
    throw new InvalidKeyError(`${join(dir, PEER_KEY_FILE)} is not a libp2p private key: ${(err as Error).message}`)
  }
  return { userKey, did, peerKey }
}
