// Why a model path holds no config.json, in the user's terms: a Hugging
// Face Hub id typed where a folder belongs, the cache entry of a download
// (models--owner--name, whose files are in snapshots/<revision>/), no such
// folder, or a folder that is not a model.
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';

/** owner/name, as on the Hub: one slash, no leading ./ or /, no spaces. */
const HUB_ID = /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/;

const isDir = (path: string) =>
  stat(path).then(
    (s) => s.isDirectory(),
    () => null, // absent
  );

/** The message for `dir` without a readable `path` (its config.json). */
export async function missingConfigMessage(dir: string, path: string): Promise<string> {
  const what = await isDir(dir);
  if (what === null && HUB_ID.test(dir))
    return (
      `${dir}: no such folder. It looks like a Hugging Face Hub id: lorafleet reads local folders, ` +
      `so download it first (\`hf download ${dir} --local-dir ${dir.split('/')[1]}\`, or ` +
      `\`huggingface-cli download\` with the same arguments) and give that folder`
    );
  if (what === null) return `${dir}: no such folder (a model folder is expected)`;
  if (what === false)
    return `${dir}: a file, not a folder (a model folder is expected: the folder with config.json)`;
  const snapshots = join(dir, 'snapshots');
  if (await isDir(snapshots)) {
    const revisions = await readdir(snapshots).catch(() => [] as string[]);
    const example = revisions.length > 0 ? join(snapshots, revisions[0]!) : join(snapshots, 'REV');
    return (
      `${path}: not found; ${dir} is a Hugging Face cache entry: its files are in ` +
      `snapshots/<revision>/, so give that folder (here: ${example})`
    );
  }
  return `${path}: not found; a model folder needs config.json and model.safetensors`;
}
