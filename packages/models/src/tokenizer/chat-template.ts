// A model's chat template (tokenizer_config.json's "chat_template", Jinja)
// rendered with @huggingface/jinja, the engine transformers.js uses, and the
// names transformers passes to it: messages, add_generation_prompt and the
// special tokens' text (bos_token, eos_token, ...).
import { Template } from '@huggingface/jinja';
import type { HfTokenizer } from './hf-json/hf-tokenizer.js';
import type { ChatFormat, ChatMessage } from './types.js';

/**
 * The template text: a string, or a list of {name, template} (transformers'
 * multi-template form) from which "default" is used.
 */
export function chatTemplateText(value: unknown, file: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) {
    const named = value.find(
      (t): t is { name: string; template: string } =>
        typeof t === 'object' &&
        t !== null &&
        t.name === 'default' &&
        typeof t.template === 'string',
    );
    if (named) return named.template;
  }
  throw new Error(
    `${file}: chat_template must be a string or a list holding {"name": "default", "template": "..."}`,
  );
}

export function chatFormat(templateText: string, tokenizer: HfTokenizer, file: string): ChatFormat {
  let template: Template;
  try {
    template = new Template(templateText);
  } catch (err) {
    throw new Error(`${file}: chat_template does not parse as Jinja (${(err as Error).message})`);
  }
  const controlTokens = tokenizer.addedTokens.filter((t) => t.special).map((t) => t.content);
  return {
    render(messages: readonly ChatMessage[], addGenerationPrompt: boolean): string {
      try {
        return template.render({
          messages: messages.map((m) => ({ role: m.role, content: m.content })),
          add_generation_prompt: addGenerationPrompt,
          ...tokenizer.specialTokens,
        });
      } catch (err) {
        throw new Error(`${file}: chat_template failed to render: ${(err as Error).message}`);
      }
    },
    encodeRendered: (text) => tokenizer.encodeWithSpecialTokens(text),
    isControlToken: (id) => tokenizer.isSpecial(id),
    controlTokens,
  };
}
