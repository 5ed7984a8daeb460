/**
 * Node-only: the browser client's static files from web/dist: no token (they hold no secret), a
 * strict CSP (scripts, styles and connections only to this peer), nosniff, and a year's caching
 * for Vite's content-hashed assets/ (index.html is revalidated, so a rebuild shows at once).
 */
import { constants } from 'node:fs'
import { open } from 'node:fs/promises'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { extname, resolve, sep } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ApiError } from './errors.ts'

/** Where `vite build` puts the browser client (see vite.config.ts). */
export const DEFAULT_WEB_ROOT = fileURLToPath(new URL('../../web/dist/', import.meta.url))
/** The KTX2 transcoder's worker (see vite.config.ts), the one file served with its own CSP. */
export const KTX2_WORKER_PATH = '/basis/ktx2-worker.js'
/** Largest static file of the client we serve (the three.js bundle is well under it). */
export const MAX_STATIC_FILE_BYTES = 16 * 1024 * 1024

const STATIC_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.wasm': 'application/wasm',
  '.vrm': 'model/gltf-binary',
  '.map': 'application/json; charset=utf-8'
}

  /**
   * GET|HEAD of the browser client's files from web/dist: no token (they hold no secret), a strict
   * CSP (scripts, styles and connections only to this peer), nosniff, and a year's caching for
   * Vite's content-hashed assets/ (index.html is revalidated, so a rebuild shows at once).
   */
export async function serveStatic (root: string | null, req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    if (req.method !== 'GET' && req.method !== 'HEAD') throw new ApiError(405, 'MethodNotAllowed', `${req.method ?? ''} is not allowed here`)
    let rel: string
    try {
      rel = decodeURIComponent(url.pathname)
    } catch {
      throw new ApiError(400, 'InvalidPath', 'path is not valid percent-encoding')
    }
    if (rel === '/' || rel === '') rel = '/index.html'
    const file = root == null ? null : resolve(root, '.' + rel)
    if (root == null || file == null || !file.startsWith(root + sep) || rel.includes('\0')) throw new ApiError(404, 'NotFound', 'no such file')
    let data: Buffer
    try {
      const handle = await open(file, constants.O_RDONLY)
      try {
        const st = await handle.stat()
        if (!st.isFile() || st.size > MAX_STATIC_FILE_BYTES) throw Object.assign(new Error('not a file'), { code: 'ENOENT' })
        data = await handle.readFile()
      } finally {
        await handle.close()
      }
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (code !== 'ENOENT' && code !== 'EISDIR' && code !== 'ENOTDIR') throw err
      if (rel === '/index.html') {
        const text = 'client not built: run npm run build:web\n'
        res.writeHead(503, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' })
        res.end(req.method === 'HEAD' ? undefined : text)
        return
      }
      throw new ApiError(404, 'NotFound', 'no such file')
    }
    const hashed = rel.startsWith('/assets/')
    if (rel === KTX2_WORKER_PATH) {
      // The Basis transcoder's worker (KTX2 textures): Emscripten code that evaluates strings, so
      // eval is allowed here, in a worker that may load and connect to nothing.
      res.writeHead(200, {
        'content-type': STATIC_TYPES['.js'],
        'content-length': data.length,
        'cache-control': 'no-cache',
        'x-content-type-options': 'nosniff',
        'cross-origin-resource-policy': 'same-origin',
        'content-security-policy': "default-src 'none'; script-src 'unsafe-eval' 'wasm-unsafe-eval'"
      })
      res.end(req.method === 'HEAD' ? undefined : data)
      return
    }
    const host = req.headers.host ?? ''
    res.writeHead(200, {
      'content-type': STATIC_TYPES[extname(file).toLowerCase()] ?? 'application/octet-stream',
      'content-length': data.length,
      'cache-control': hashed ? 'public, max-age=31536000, immutable' : 'no-cache',
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
      'x-frame-options': 'DENY',
      'cross-origin-opener-policy': 'same-origin',
      'cross-origin-resource-policy': 'same-origin',
      // data: and blob: in connect-src let GLTFLoader read embedded buffers (they never leave the page).
      // 'wasm-unsafe-eval' lets the page (meshopt decoder) and the blob: worker KTX2Loader starts
      // (Basis transcoder) compile WebAssembly; it allows no JavaScript eval.
      'content-security-policy': [
        "default-src 'self'",
        "script-src 'self' 'wasm-unsafe-eval'",
        "style-src 'self'",
        `connect-src 'self' ws://${host} data: blob:`,
        "img-src 'self' blob: data:",
        "media-src 'self' blob: data:",
        "worker-src 'self' blob:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'"
      ].join('; ')
    })
    res.end(req.method === 'HEAD' ? undefined : data)
  }

