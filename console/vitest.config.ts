import { defineConfig, mergeConfig } from 'vitest/config';
import vite from './vite.config.ts';

// Component tests of the branches a browser run won't reach cheaply (races, refusals);
// the flows themselves are tested in Chromium against the real server (tests/api/console.rs).
export default mergeConfig(
  vite,
  defineConfig({
    test: {
      environment: 'happy-dom',
      include: ['test/**/*.test.{ts,tsx}'],
    },
  }),
);
