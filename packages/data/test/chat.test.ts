// tokenizeChat with a plain-text template (no control tokens) on the byte
// tokenizer: the spans come from incremental rendering alone; template errors
// and malformed messages are the row's problem, reported as bad lines.
import { describe, expect, it } from 'vitest';
import { IGNORE_INDEX, parseJsonlLine, tokenizeChat } from '../src/index.js';
import { chatBytes, enc, plainChat } from './helpers.js';

describe('tokenizeChat', () => {
  it('trains each reply to the end of its rendering when the template writes no control token', () => {
    const [example, ...more] = tokenizeChat(plainChat, [
      { role: 'user', content: 'hi' },
      { role: 'assistant', content: 'yo' },
      { role: 'user', content: 'ok?' },
      { role: 'assistant', content: 'ok' },
    ]);
    expect(more).toEqual([]);
    const text = 'user: hi\nassistant: yo\nuser: ok?\nassistant: ok\n';
    expect(Array.from(example!.ids)).toEqual(enc(text));
    const trained = Array.from(example!.labels, (l, i) =>
      l === IGNORE_INDEX ? ' ' : text[i],
    ).join('');
    expect(trained.split(' ').filter(Boolean)).toEqual(['yo\n', 'ok\n']);
  });

  it("trains only the completion's replies of a conversational prompt/completion row", () => {
    const [example] = tokenizeChat(
      plainChat,
      [
        { role: 'user', content: 'a' },
        { role: 'assistant', content: 'b' },
        { role: 'user', content: 'c' },
        { role: 'assistant', content: 'd' },
      ],
      2,
    );
    const labelled = Array.from(example!.labels).filter((l) => l !== IGNORE_INDEX);
    expect(labelled).toEqual(enc('d\n'));
  });

  it('reports bad rows as messages: template errors, control-token text, malformed messages', () => {
    const line = (o: object) => parseJsonlLine(JSON.stringify(o), chatBytes);
    expect(
      line({
        messages: [
          { role: 'tool', content: 'x' },
          { role: 'assistant', content: 'y' },
        ],
      }),
    ).toBe('the chat template refused messages[0..1): tool messages are not supported');
    expect(line({ messages: [{ role: 'assistant', content: 'a<eot>' }] })).toMatch(
      /^messages\[0\]\.content contains the control token "<eot>"/,
    );
    expect(line({ messages: [] })).toBe('"messages" is empty');
    expect(line({ messages: [{ role: 'user' }] })).toBe('"messages"[0].content must be a string');
    expect(line({ prompt: [{ role: 'user', content: 'q' }], completion: 'a' })).toBe(
      '"completion" must be an array of {"role", "content"} objects',
    );
  });
});
