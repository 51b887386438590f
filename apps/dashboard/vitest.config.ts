import { projectConfig } from '../../vitest.shared.js';

// The page's pure parts (folding events, ticks, formatting); the page itself
// is tested in Chromium by apps/coordinator/test/dashboard-e2e.test.ts.
export default projectConfig('dashboard');
