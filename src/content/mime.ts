/**
 * The Content-Type to serve a file with: from its name's extension when we know it, else from the
 * magic bytes it starts with, else application/octet-stream.
 *
 * Sniffing only ever yields passive types (images, audio, video, models, wasm, PDF). It never
 * yields text/html, image/svg+xml, XML or JavaScript: content fetched from a peer and served on
 * our API origin must not become a page that runs script there just because of what its bytes
 * look like. The extension map does include html, svg and js, because a publisher who names a
 * file 'index.html' means it; the server must therefore serve content with
 * `X-Content-Type-Options: nosniff` (so a browser does not sniff octet-stream into HTML itself)
 * and isolate active types, e.g. `Content-Security-Policy: sandbox` or a separate origin.
 */

/** Bytes of the file start that sniffing looks at; pass at least this many when there are. */
export const SNIFF_BYTES = 16

export const OCTET_STREAM = 'application/octet-stream'

/** Lower-case extension to type. */
const BY_EXTENSION = new Map<string, string>([
  ['gltf', 'model/gltf+json'],
  ['glb', 'model/gltf-binary'],
  ['png', 'image/png'],
  ['jpg', 'image/jpeg'],
  ['jpeg', 'image/jpeg'],
  ['webp', 'image/webp'],
  ['gif', 'image/gif'],
  ['avif', 'image/avif'],
  ['svg', 'image/svg+xml'],
  ['ktx2', 'image/ktx2'],
  ['mp3', 'audio/mpeg'],
  ['ogg', 'audio/ogg'],
  ['oga', 'audio/ogg'],
  ['opus', 'audio/ogg'],
  ['wav', 'audio/wav'],
  ['flac', 'audio/flac'],
  ['m4a', 'audio/mp4'],
  ['mp4', 'video/mp4'],
  ['webm', 'video/webm'],
  ['json', 'application/json'],
  ['txt', 'text/plain; charset=utf-8'],
  ['html', 'text/html; charset=utf-8'],
  ['js', 'text/javascript'],
  ['mjs', 'text/javascript'],
  ['css', 'text/css'],
  ['wasm', 'application/wasm'],
  ['pdf', 'application/pdf'],
  ['bin', OCTET_STREAM]
])

/** The extension of the last path segment of `name`, lower-cased ('' for none or a dotfile). */
function extension (name: string): string {
  const base = name.slice(name.lastIndexOf('/') + 1)
  const dot = base.lastIndexOf('.')
  return dot <= 0 ? '' : base.slice(dot + 1).toLowerCase()
}

/** Whether `head` holds `magic` (a string of byte values) at `offset`. */
function at (head: Uint8Array, offset: number, magic: string): boolean {
  if (head.length < offset + magic.length) return false
  for (let i = 0; i < magic.length; i++) {
    if (head[offset + i] !== magic.charCodeAt(i)) return false
  }
  return true
}

/** An MPEG audio frame header: 11 sync bits, and no reserved version, layer, bitrate or rate. */
function mpegFrame (head: Uint8Array): boolean {
  if (head.length < 3 || head[0] !== 0xff || (head[1] & 0xe0) !== 0xe0) return false
  const version = (head[1] >> 3) & 3
  const layer = (head[1] >> 1) & 3 // 0 is reserved in MPEG audio, and is what AAC ADTS uses
  const bitrate = head[2] >> 4
  const rate = (head[2] >> 2) & 3
  return version !== 1 && layer !== 0 && bitrate !== 15 && rate !== 3
}

/** The type `head` (the first bytes of a file) announces, or null. Never an active type. */
export function sniff (head: Uint8Array): string | null {
  if (at(head, 0, 'glTF')) return 'model/gltf-binary'
  if (at(head, 0, '\x89PNG\r\n\x1a\n')) return 'image/png'
  if (at(head, 0, '\xff\xd8\xff')) return 'image/jpeg'
  if (at(head, 0, 'GIF87a') || at(head, 0, 'GIF89a')) return 'image/gif'
  if (at(head, 0, '\xabKTX 20\xbb\r\n\x1a\n')) return 'image/ktx2'
  if (at(head, 0, 'RIFF') && at(head, 8, 'WEBP')) return 'image/webp'
  if (at(head, 0, 'RIFF') && at(head, 8, 'WAVE')) return 'audio/wav'
  if (at(head, 0, 'OggS')) return 'audio/ogg'
  if (at(head, 0, 'fLaC')) return 'audio/flac'
  if (at(head, 0, 'ID3') || mpegFrame(head)) return 'audio/mpeg'
  if (at(head, 4, 'ftyp')) {
    // The major brand says which ISO base media file this is.
    if (at(head, 8, 'M4A ') || at(head, 8, 'M4B ')) return 'audio/mp4'
    if (at(head, 8, 'avif') || at(head, 8, 'avis')) return 'image/avif'
    return 'video/mp4'
  }
  if (at(head, 0, '\x1a\x45\xdf\xa3')) return 'video/webm'
  if (at(head, 0, '\0asm')) return 'application/wasm'
  if (at(head, 0, '%PDF-')) return 'application/pdf'
  return null
}

/** The Content-Type for a file called `name` (may be a path) starting with the bytes `head`. */
export function contentType (name: string | undefined, head: Uint8Array): string {
  if (name != null) {
    const type = BY_EXTENSION.get(extension(name))
    if (type != null) return type
  }
  return sniff(head) ?? OCTET_STREAM
}
