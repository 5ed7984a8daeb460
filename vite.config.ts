// Builds the browser client (web/) into web/dist, which the peer's API server serves.
// Lean on purpose: three.js core + GLTFLoader, plain DOM, no framework, no inline script (the
// page's CSP allows only 'self').
import { defineConfig, type Plugin } from 'vite'

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
  plugins: [browserIdentity()],
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
