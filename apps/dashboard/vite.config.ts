import { defineConfig } from 'vite';

// Built to static files that the coordinator serves (relative URLs, no CDN).
export default defineConfig({
  base: './',
  build: { outDir: 'dist', emptyOutDir: true, target: 'es2022' },
});
