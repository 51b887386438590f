// PEFT's target_modules rules on a Llama's layer names: names matched as
// path suffixes, a regex string matched against whole paths, "all-linear",
// and what an adapter file records for each.
import { describe, expect, test } from 'vitest';
import {
  ALL_LINEAR,
  modelLinearModules,
  modelConfigFromJson,
  savedTargets,
  selectTargets,
} from '../src/index.js';

const config = modelConfigFromJson(
  {
    model_type: 'llama',
    vocab_size: 50,
    hidden_size: 16,
    intermediate_size: 24,
    num_hidden_layers: 3,
    num_attention_heads: 4,
    num_key_value_heads: 2,
  },
  'test',
);
const layers = modelLinearModules(config);
const names = (xs: { name: string }[]) => xs.map((l) => l.name);

describe('LoRA target modules', () => {
  test('names match whole path components at the end, in model order', () => {
    const chosen = selectTargets(layers, ['v_proj', 'self_attn.q_proj']);
    expect(names(chosen)).toEqual([
      'model.layers.0.self_attn.q_proj',
      'model.layers.0.self_attn.v_proj',
      'model.layers.1.self_attn.q_proj',
      'model.layers.1.self_attn.v_proj',
      'model.layers.2.self_attn.q_proj',
      'model.layers.2.self_attn.v_proj',
    ]);
    expect(() => selectTargets(layers, ['proj'])).toThrow(
      /"proj" matches no module; the model's linear layers end in: self_attn\.q_proj, .*mlp\.down_proj/,
    );
  });

  test('a regex string must match the whole path (PEFT re.fullmatch)', () => {
    const chosen = selectTargets(layers, String.raw`model\.layers\.[02]\.mlp\.(up|down)_proj`);
    expect(names(chosen)).toEqual([
      'model.layers.0.mlp.up_proj',
      'model.layers.0.mlp.down_proj',
      'model.layers.2.mlp.up_proj',
      'model.layers.2.mlp.down_proj',
    ]);
    expect(() => selectTargets(layers, 'q_proj')).toThrow(/matches no whole module path/);
    expect(() => selectTargets(layers, '(')).toThrow(/not a valid regular expression/);
  });

  test('"all-linear" takes every linear layer and is saved as their names', () => {
    expect(selectTargets(layers, [ALL_LINEAR])).toHaveLength(7 * 3);
    expect(selectTargets(layers, ALL_LINEAR)).toHaveLength(7 * 3);
    expect(() => selectTargets(layers, [ALL_LINEAR, 'q_proj'])).toThrow(/give it alone/);
    expect(savedTargets([ALL_LINEAR], layers)).toEqual([
      'down_proj',
      'gate_proj',
      'k_proj',
      'o_proj',
      'q_proj',
      'up_proj',
      'v_proj',
    ]);
    expect(savedTargets(['q_proj', 'v_proj', 'q_proj'], layers)).toEqual(['q_proj', 'v_proj']);
  });
});
