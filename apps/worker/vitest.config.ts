import { projectConfig } from '../../vitest.shared.js';

export default projectConfig('worker-daemon', { testTimeout: 120_000 });
