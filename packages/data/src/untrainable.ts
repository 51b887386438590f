// Examples that train nothing: a prompt/completion row whose prompt fills the
// context (so truncation cuts the whole completion), or a pre-tokenized row
// whose labels are all -100. Such a row would make a batch with no labelled
// token; it is dropped when the data is loaded, counted and reported like a
// bad line, and the data is refused only when none is left.

import { DEFAULT_REPORT_FIRST, DatasetError, type Problem, formatProblem } from './problems.js';
import { IGNORE_INDEX, type TokenizedExample } from './tokenizer.js';

/** Examples with their source lines, as the readers return them. */
export interface SourcedExamples {
  file: string;
  examples: TokenizedExample[];
  lines: number[];
}

export interface UntrainableDrop extends SourcedExamples {
  /** How many examples were dropped. */
  dropped: number;
  /** The first few dropped examples, as file:line and why. */
  problems: Problem[];
}

/**
 * The first position t >= 1 below `limit` whose label is trained (position
 * t - 1 predicts it; labels[0] predicts nothing), or -1.
 */
export function firstTrainedPosition(example: TokenizedExample, limit: number): number {
  const end = Math.min(example.labels.length, limit);
  for (let t = 1; t < end; t++) if (example.labels[t] !== IGNORE_INDEX) return t;
  return -1;
}

function whyUntrainable(example: TokenizedExample, seqLen: number | undefined): string {
  const anywhere = firstTrainedPosition(example, Infinity);
  if (anywhere < 0) return 'no token is trained (every label is -100)';
  return (
    `no trained token within --seq-len ${seqLen}: the completion starts at token ${anywhere} ` +
    `of ${example.ids.length}, after truncation to ${seqLen}`
  );
}

/**
 * Drops the examples that train no token. `seqLen`: each example is truncated
 * to it (one example per row, padding), so a trained token must lie before it;
 * undefined when examples are packed (a token anywhere counts).
 */
export function dropUntrainable(
  read: SourcedExamples,
  seqLen: number | undefined,
  reportFirst = DEFAULT_REPORT_FIRST,
): UntrainableDrop {
  const examples: TokenizedExample[] = [];
  const lines: number[] = [];
  const problems: Problem[] = [];
  let dropped = 0;
  read.examples.forEach((example, i) => {
    const line = read.lines[i] ?? 0;
    if (firstTrainedPosition(example, seqLen ?? Infinity) >= 0) {
      examples.push(example);
      lines.push(line);
      return;
    }
    dropped++;
    if (problems.length < reportFirst) {
      problems.push({ file: read.file, line, message: whyUntrainable(example, seqLen) });
    }
  });
  if (examples.length === 0 && dropped > 0) {
    const listing = problems.map((p) => `\n  ${formatProblem(p)}`).join('');
    const more = dropped > problems.length ? `\n  ... and ${dropped - problems.length} more` : '';
    throw new DatasetError(
      `${read.file}: none of its ${dropped} examples has a token to train on` +
        `${seqLen === undefined ? '' : ` within --seq-len ${seqLen}`}; raise --seq-len or shorten the prompts:${listing}${more}`,
      problems,
    );
  }
  return { file: read.file, examples, lines, dropped, problems };
}
