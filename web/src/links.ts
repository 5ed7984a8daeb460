/**
 * Links in the client: the one link format the peers use (src/net/links.ts, shared, so a link made
 * by the CLI or another peer's client opens here), read from the address bar's `#...` or from text
 * a person pasted. A plain space id still works where a space is asked for.
 */
import { formatLink, InvalidLinkError, parseLink, type Link, type LinkKind } from '../../src/net/links.ts'

export { formatLink, InvalidLinkError, parseLink, type Link, type LinkKind }

/** The link in the address bar's fragment, an InvalidLinkError when it is malformed, or nothing when the fragment names no link. */
export function hashLink (hash: string = location.hash): Link | InvalidLinkError | undefined {
  const body = hash.startsWith('#') ? hash.slice(1) : hash
  if (!/(^|&)(join|space|content)=/.test(body)) return undefined
  try {
    return parseLink('#' + body)
  } catch (err) {
    if (err instanceof InvalidLinkError) return err
    return new InvalidLinkError((err as Error).message)
  }
}

/** What a person pasted: a bare space id (letters and digits) becomes a space link with no peers; anything else must parse as a link. */
export function readPasted (text: string): Link {
  const t = text.trim()
  if (/^[a-z0-9]+$/i.test(t)) return parseLink(`pv:space=${t}`)
  return parseLink(t)
}

/** A long id shortened for reading (the full one goes in a title). */
export function shortId (id: string, keep = 10): string {
  return id.length <= keep * 2 + 1 ? id : `${id.slice(0, keep)}…${id.slice(-6)}`
}

/** Copies text to the clipboard; false when the browser refuses (the caller shows the text instead). */
export async function copyText (text: string): Promise<boolean> {
  try {
    await navigator.clipboard.writeText(text)
    return true
  } catch {
    return false
  }
}
