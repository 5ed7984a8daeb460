// Builds the browser client (web/) into web/dist, which the peer's API server serves.
// Lean on purpose: three.js core + GLTFLoader, plain DOM, no framework, no inline script (the
// page's CSP allows only 'self').
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { defineConfig, type Plugin } from 'vite'

/**
 * KTX2Loader runs three's Basis transcoder in a Worker it makes from a blob: URL, and the
 * transcoder (Emscripten embind) evaluates strings, which the page's CSP forbids. This writes the
 * same worker source to basis/ktx2-worker.js; the peer serves that one file with a CSP of its own
 * that allows eval inside the worker only (src/api/static.ts), and web/src/models/loader.ts points
 * KTX2Loader's workers at it.
 */
function ktx2Worker (): Plugin {
  return {
    name: 'peerverse-ktx2-worker',
    apply: 'build',
    async generateBundle () {
      const { KTX2Loader } = await import('three/examples/jsm/loaders/KTX2Loader.js') as unknown as { KTX2Loader: Record<string, unknown> & { BasisWorker: () => void } }
      const js = readFileSync(createRequire(import.meta.url).resolve('three/examples/jsm/libs/basis/basis_transcoder.js'), 'utf8')
      const fn = KTX2Loader.BasisWorker.toString()
      const source = [
        '/* constants */',
        'let _EngineFormat = ' + JSON.stringify(KTX2Loader.EngineFormat),
        'let _EngineType = ' + JSON.stringify(KTX2Loader.EngineType),
        'let _TranscoderFormat = ' + JSON.stringify(KTX2Loader.TranscoderFormat),
        'let _BasisFormat = ' + JSON.stringify(KTX2Loader.BasisFormat),
        '/* basis_transcoder.js */',
        js,
        '/* worker */',
        fn.substring(fn.indexOf('{') + 1, fn.lastIndexOf('}'))
      ].join('\n')
      this.emitFile({ type: 'asset', fileName: 'basis/ktx2-worker.js', source })
    }
  }
}

/**
 * The capability code the browser runs (the wallet's light client) hashes and verifies through
 * src/identity: on Node with node:crypto, in the bundle with each file's `.browser.ts` twin.
 */
function browserIdentity (): Plugin {
  return {
    name: 'peerverse-browser-identity',
    enforce: 'pre',
    async resolveId (source, importer, options) {
      if (!/\/identity\/(hash|ed25519)\.ts$/.test(source) && !/^\.\/(hash|ed25519)\.ts$/.test(source)) return null
      const r = await this.resolve(source, importer, { ...options, skipSelf: true })
      if (r == null || !/\/src\/identity\/(hash|ed25519)\.ts$/.test(r.id)) return null
      return { ...r, id: r.id.replace(/\.ts$/, '.browser.ts') }
    }
  }
}

export default defineConfig({
  root: 'web',
  base: '/',
  publicDir: false,
  plugins: [browserIdentity(), ktx2Worker()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    sourcemap: false,
    reportCompressedSize: true,
    chunkSizeWarningLimit: 800
  },
  server: { host: '127.0.0.1' }
})
