import { projectConfig } from '../../vitest.shared.js';

export default projectConfig('protocol', { testTimeout: 60_000 });
