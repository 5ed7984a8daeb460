// Patches applied to installed dependencies after `npm install` / `npm ci`, each with its reason.
// Plain JavaScript so it runs on whatever node npm itself runs on. Idempotent.
//
// @libp2p/utils lpStream: while a length prefix has not ended (every byte has the varint
// continuation bit set) the reader kept reading one byte at a time and never applied
// maxLengthLength, so a peer could send megabytes of 0x80 and hold the event loop for seconds
// (kad-dht, identify and our own protocols all read through it). The patch rejects a prefix that
// grows past maxLengthLength (or 10 bytes, the longest 64-bit varint) before it ends.
import { readFileSync, writeFileSync, existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const MARKER = '/* peerverse: bounded length prefix */'
const file = join(root, 'node_modules/@libp2p/utils/dist/src/stream-utils.js')
const before = `                    if (err instanceof RangeError) {
                        continue;
                    }`
const after = `                    if (err instanceof RangeError) {
                        ${MARKER}
                        if (lengthBuffer.byteLength >= (opts?.maxLengthLength ?? 10)) {
                            throw new InvalidDataLengthLengthError(\`Message length length too long - \${lengthBuffer.byteLength} >= \${opts?.maxLengthLength ?? 10}\`);
                        }
                        continue;
                    }`

if (!existsSync(file)) {
  console.error(`patch-deps: ${file} not found; nothing patched`)
  process.exit(0)
}
const source = readFileSync(file, 'utf8')
if (source.includes(MARKER)) process.exit(0)
if (!source.includes(before)) {
  console.error('patch-deps: @libp2p/utils lpStream changed shape; the length-prefix patch was not applied (check whether it is still needed)')
  process.exit(1)
}
writeFileSync(file, source.replace(before, after))
