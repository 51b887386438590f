// Types of kernel-compiler.mjs, for the test that checks the committed modules.
export const KERNEL_SOURCES: string;
export function compileKernel(path: string): Promise<Uint8Array>;
export function generatedSource(name: string, wasm: Uint8Array): string;
