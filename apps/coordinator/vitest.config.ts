import { projectConfig } from '../../vitest.shared.js';

export default projectConfig('coordinator', { testTimeout: 120_000 });
