// What was trained and how: the model, the adapter's share of its parameters,
// the LoRA settings, and what crosses the wire per step vs full fine-tuning.
import { h, mount } from '../dom.js';
import { bytes, count } from '../format.js';
import type { Panel } from '../panel.js';
import type { RunView } from '../run.js';

export const factsPanel: Panel = {
  id: 'facts',
  title: 'Run',
  touches: ['run'],
  place: { kind: 'card' },
  render: renderFacts,
};

function renderFacts(el: HTMLElement, view: RunView): void {
  const f = view.facts;
  if (!f) {
    mount(el, h('p', { class: 'empty' }, 'waiting for the run facts…'));
    return;
  }
  const share = f.totalParameters > 0 ? (100 * f.trainableParameters) / f.totalParameters : 0;
  const row = (name: string, ...value: (Node | string)[]) => [
    h('dt', {}, name),
    h('dd', {}, ...value),
  ];
  const lora = f.lora;
  const ratio = f.wireBytesPerStep > 0 ? f.fullFinetuneWireBytesPerStep / f.wireBytesPerStep : 0;
  mount(
    el,
    h(
      'dl',
      { class: 'facts' },
      ...row('model', h('span', { class: 'mono', title: f.model }, f.model)),
      ...row('mode', f.mode === 'lora' ? 'LoRA' : 'full fine-tuning', ` on ${f.backend}`),
      ...row(
        'parameters',
        `${count(f.trainableParameters)} trainable of ${count(f.totalParameters)} `,
        h(
          'span',
          { class: 'muted' },
          `(${share < 0.01 ? share.toExponential(1) : share.toFixed(2)}%)`,
        ),
      ),
      ...(lora
        ? row(
            'LoRA',
            `r ${lora.r} · alpha ${lora.alpha} · dropout ${lora.dropout}`,
            h(
              'div',
              { class: 'targets' },
              ...lora.targets.map((t) => h('span', { class: 'tag' }, t)),
            ),
          )
        : []),
      ...row('batch', `${f.batchSize} rows × ${f.seqLen} tokens · ${f.workers} worker(s)`),
    ),
    h(
      'div',
      { class: 'wire' },
      h('div', { class: 'wire-title' }, 'all-reduce per worker per step'),
      wireBar('LoRA', f.wireBytesPerStep, f.fullFinetuneWireBytesPerStep, 'lora'),
      wireBar('full', f.fullFinetuneWireBytesPerStep, f.fullFinetuneWireBytesPerStep, 'full'),
      h(
        'div',
        { class: 'wire-note' },
        ratio > 0
          ? `${ratio >= 10 ? Math.round(ratio) : ratio.toFixed(1)}× less on the wire than full fine-tuning`
          : '',
      ),
    ),
  );
  for (const bar of el.querySelectorAll<HTMLElement>('[data-width]'))
    bar.style.width = `${bar.dataset.width}%`;
}

function wireBar(name: string, value: number, max: number, className: string): HTMLElement {
  // At least a sliver, so a 420x smaller figure is still seen.
  const pct = max > 0 ? Math.max(0.6, (100 * value) / max) : 0;
  return h(
    'div',
    { class: 'wire-row' },
    h('span', { class: 'wire-name' }, name),
    h(
      'div',
      { class: 'wire-track' },
      h('div', { class: `wire-fill ${className}`, 'data-width': pct.toFixed(2) }),
    ),
    h('span', { class: 'wire-value num' }, bytes(value)),
  );
}
