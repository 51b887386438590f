import { projectConfig } from '../../vitest.shared.js';

export default projectConfig('worker', { testTimeout: 120_000 });
