import { projectConfig } from '../../vitest.shared.js';

export default projectConfig('collective', { testTimeout: 60_000 });
