// Helpers for tests of this package and the ones above it (@lorafleet/models/testing).
export { BNB_4BIT_QUANTIZATION, writeBnb4bitFolder } from './bnb-4bit-folder.js';
