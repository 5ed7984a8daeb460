// Builds the browser client (web/) into web/dist, which the peer's API server serves.
// Lean on purpose: three.js core + GLTFLoader, plain DOM, no framework, no inline script (the
// page's CSP allows only 'self').
import { defineConfig } from 'vite'

export default defineConfig({
  root: 'web',
  base: '/',
  publicDir: false,
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
