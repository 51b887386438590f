#!/usr/bin/env node
// Builds the Vulkan device-select layer (vulkan-layer/device-select.c) into
// dist/vulkan-layer/: the shared library and the manifest the Vulkan loader
// reads (src/backend/vulkan-device-layer.ts loads it). A worker needs it only
// to open one of several identical GPUs with the webgpu backend, so a machine
// without a C compiler or the Vulkan headers builds everything else and is
// told what it lacks; a compile error is an error. Runs in `pnpm build`.
//   node scripts/build-vulkan-layer.mjs [--force]
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const NAME = 'VK_LAYER_LORAFLEET_device_select';
const LIBRARY = 'libVkLayer_lorafleet_device_select.so';
const MANIFEST = 'VkLayer_lorafleet_device_select.json';
const source = join(root, 'vulkan-layer', 'device-select.c');
const out = join(root, 'dist', 'vulkan-layer');

if (process.argv.includes('--help') || process.argv.includes('-h')) {
  console.log(
    'usage: node scripts/build-vulkan-layer.mjs [--force]\n' +
      `  compiles vulkan-layer/device-select.c into dist/vulkan-layer/${LIBRARY} and writes\n` +
      `  its manifest ${MANIFEST} (the ${NAME} Vulkan layer)\n` +
      '  needs a C compiler (CC, default cc) and the Vulkan headers (Debian: libvulkan-dev);\n' +
      '  without them it says so and exits 0\n' +
      '  --force  rebuild even when the library is newer than its source',
  );
  process.exit(0);
}

/** Why the layer cannot be built here, or undefined. */
function missing(cc) {
  if (process.platform !== 'linux')
    return `Vulkan layers are built on Linux only (this is ${process.platform})`;
  if (spawnSync(cc, ['--version'], { stdio: 'ignore' }).status !== 0)
    return `no C compiler (${cc})`;
  const probe = spawnSync(cc, ['-E', '-x', 'c', '-'], {
    input: '#include <vulkan/vk_layer.h>\n',
    stdio: ['pipe', 'ignore', 'ignore'],
  });
  if (probe.status !== 0) return 'no Vulkan headers (vulkan/vk_layer.h)';
  return undefined;
}

const cc = process.env.CC || 'cc';
const library = join(out, LIBRARY);
// The layer's C files (device-select.c and the header it includes), newest first.
const newestSource = Math.max(
  ...readdirSync(dirname(source)).map((f) => statSync(join(dirname(source), f)).mtimeMs),
);
const fresh =
  !process.argv.includes('--force') &&
  existsSync(library) &&
  existsSync(join(out, MANIFEST)) &&
  statSync(library).mtimeMs >= newestSource;
if (fresh) process.exit(0);

const why = missing(cc);
if (why) {
  console.log(
    `core: the Vulkan device-select layer is not built: ${why}. A webgpu worker needs it only ` +
      'to open one of several identical GPUs (--gpu I); to build it: ' +
      '`apt-get install gcc libvulkan-dev`, then `node packages/core/scripts/build-vulkan-layer.mjs`',
  );
  process.exit(0);
}

mkdirSync(out, { recursive: true });
const partial = `${library}.${process.pid}.tmp`;
execFileSync(
  cc,
  ['-std=c11', '-D_GNU_SOURCE', '-O2', '-Wall', '-Wextra', '-Werror', '-fPIC', '-shared'].concat([
    '-fvisibility=hidden',
    '-o',
    partial,
    source,
    '-lpthread',
  ]),
  { stdio: 'inherit' },
);
renameSync(partial, library); // whole or absent: concurrent builds and loaders never see half a file
const manifest = {
  file_format_version: '1.1.2',
  layer: {
    name: NAME,
    type: 'GLOBAL',
    library_path: `./${LIBRARY}`, // relative to this manifest
    api_version: '1.3.0',
    implementation_version: '1',
    description: 'LoRA Fleet: shows the process one GPU (LORAFLEET_VK_DEVICE=K:NAME)',
  },
};
writeFileSync(`${join(out, MANIFEST)}.tmp`, `${JSON.stringify(manifest, null, 2)}\n`);
renameSync(`${join(out, MANIFEST)}.tmp`, join(out, MANIFEST));
console.log(`core: built the Vulkan device-select layer (dist/vulkan-layer/${LIBRARY})`);
