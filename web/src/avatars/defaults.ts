/**
 * The project's default avatars (VRM 1.0, CC0, made by tools/avatars): their names and the URLs
 * the bundle serves them at, and a stable pick of one for a person without an avatar of their own.
 * Each URL is a literal `new URL(…, import.meta.url)` so vite emits the file as a hashed asset.
 */

/** Name of a default avatar (its file is web/assets/avatars/NAME.vrm). */
export type DefaultAvatarName = 'ada' | 'bo' | 'cy' | 'dee'

/** The default avatars, in a fixed order (`defaultAvatarFor` indexes it). */
export const DEFAULT_AVATARS: ReadonlyArray<{ name: DefaultAvatarName, url: string }> = [
  { name: 'ada', url: new URL('../../assets/avatars/ada.vrm', import.meta.url).href },
  { name: 'bo', url: new URL('../../assets/avatars/bo.vrm', import.meta.url).href },
  { name: 'cy', url: new URL('../../assets/avatars/cy.vrm', import.meta.url).href },
  { name: 'dee', url: new URL('../../assets/avatars/dee.vrm', import.meta.url).href }
]

/** 32-bit FNV-1a of the string's UTF-8 bytes. */
function fnv1a (text: string): number {
  let h = 0x811c9dc5
  for (const b of new TextEncoder().encode(text)) {
    h ^= b
    h = Math.imul(h, 0x01000193) >>> 0
  }
  return h
}

/** The default avatar of a person: the same for a did on every page and every peer. */
export function defaultAvatarFor (did: string): DefaultAvatarName {
  return DEFAULT_AVATARS[fnv1a(did) % DEFAULT_AVATARS.length].name
}

/** The URL of a default avatar by name, or undefined for a name that is not one. */
export function defaultAvatarUrl (name: string): string | undefined {
  return DEFAULT_AVATARS.find(a => a.name === name)?.url
}
