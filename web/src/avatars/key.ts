/** Which model a member wears, without loading anything (the avatar code itself loads on first use). */
import { defaultAvatarFor } from './defaults.ts'

/** Cache keys of the client's default avatars start with this; others are content CIDs. */
export const DEFAULT_PREFIX = 'default:'

/** Which model a member wears: its cache key and the name the page shows (the CID or the default's name). */
export function modelOf (did: string, avatar: string | undefined): { key: string, name: string } {
  if (avatar != null && avatar !== '') return { key: avatar, name: avatar }
  const name = defaultAvatarFor(did)
  return { key: DEFAULT_PREFIX + name, name }
}
