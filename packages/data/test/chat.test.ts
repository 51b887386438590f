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

  it('widens the loss by LossScope: prompt replies, every token, every token after the prompt', () => {
    const messages = [
      { role: 'user', content: 'a' },
      { role: 'assistant', content: 'b' },
      { role: 'user', content: 'c' },
      { role: 'assistant', content: 'd' },
    ];
    const text = 'user: a\nassistant: b\nuser: c\nassistant: d\n';
    const trained = (trainFrom: number, assistantOnly: boolean): string => {
      const [example, ...more] = tokenizeChat(plainChat, messages, trainFrom, assistantOnly);
      expect(more).toEqual([]);
      expect(Array.from(example!.ids)).toEqual(enc(text));
      return Array.from(example!.labels, (l, i) => (l === IGNORE_INDEX ? '_' : text[i])).join('');
    };
    const hidden = (t: string) => '_'.repeat(t.length);
    // completion_only_loss=False, assistant_only_loss=True: the prompt's reply trains too.
    expect(trained(0, true)).toBe(
      `${hidden('user: a\nassistant: ')}b\n${hidden('user: c\nassistant: ')}d\n`,
    );
    // assistant_only_loss=False: everything, or everything after the prompt with its generation prompt.
    expect(trained(0, false)).toBe(text);
    expect(trained(3, false)).toBe(`${hidden('user: a\nassistant: b\nuser: c\nassistant: ')}d\n`);
    // A conversation without a reply trains when every token does.
    const [question] = tokenizeChat(plainChat, messages.slice(0, 1), 0, false);
    expect(Array.from(question!.labels)).toEqual(enc('user: a\n'));
  });

  it('reads the LossScope from JSONL rows: text prompt/completion trains the prompt without completionOnly', () => {
    const line = JSON.stringify({ prompt: 'Q', completion: 'A' });
    const wide = parseJsonlLine(line, chatBytes, { completionOnly: false, assistantOnly: true });
    const narrow = parseJsonlLine(line, chatBytes);
    if (typeof wide === 'string' || Array.isArray(wide)) throw new Error(String(wide));
    if (typeof narrow === 'string' || Array.isArray(narrow)) throw new Error(String(narrow));
    expect(Array.from(wide.labels)).toEqual(Array.from(wide.ids));
    expect(Array.from(narrow.ids)).toEqual(Array.from(wide.ids));
    expect(narrow.labels[0]).toBe(IGNORE_INDEX);
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
