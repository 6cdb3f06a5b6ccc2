import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

// The server embeds dist/ and serves it at /console (src/http/console.rs). The build is
// checked in, and CI rebuilds it from the lock file and fails on any difference: so no
// timestamps, no absolute paths and no source maps in it; content-hashed names only.
export default defineConfig({
  base: '/console/',
  plugins: [react()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    sourcemap: false,
    // No inline script or style may reach the page (its CSP forbids both): no module
    // preload polyfill (it is injected code) and every asset a file, never a data: URL.
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    rolldownOptions: {
      output: {
        entryFileNames: 'assets/[name]-[hash].js',
        chunkFileNames: 'assets/[name]-[hash].js',
        assetFileNames: 'assets/[name]-[hash][extname]',
      },
    },
  },
});
