// The checkpoints the run wrote, newest first, with links to the adapter
// files still on disk (older ones may have been pruned), and the final adapter.
import { apiUrl } from '../api.js';
import { h, mount } from '../dom.js';
import type { Download } from '@lorafleet/run-events';
import { clock } from '../format.js';
import type { Panel } from '../panel.js';
import type { RunView } from '../run.js';

export const checkpointsPanel: Panel = {
  id: 'checkpoints',
  title: 'Checkpoints',
  touches: ['run', 'checkpoint', 'end', 'downloads'],
  place: { kind: 'card' },
  render: renderCheckpoints,
};

function renderCheckpoints(el: HTMLElement, view: RunView): void {
  const onDisk = new Map(view.downloads.map((d) => [d.name, d]));
  const final = onDisk.get('adapter');
  // Newer than the last listing of the disk: links come with the next one.
  const listedUpTo = Math.max(-1, ...view.downloads.map((d) => d.step ?? -1));
  const rows = [...view.checkpoints].reverse().map(({ step, time }) => {
    const download = onDisk.get(`step-${String(step).padStart(6, '0')}`);
    return h(
      'li',
      { 'data-testid': 'checkpoint' },
      h('span', { class: 'ck-step' }, `step ${step}`),
      h('span', { class: 'muted' }, clock(time)),
      download
        ? links(download)
        : h('span', { class: 'muted' }, step > listedUpTo && !view.end ? '…' : 'pruned'),
    );
  });
  if (final) {
    rows.unshift(
      h(
        'li',
        { class: 'final' },
        h('span', { class: 'ck-step' }, 'final adapter'),
        h('span', {}, ''),
        links(final),
      ),
    );
  }
  mount(
    el,
    rows.length
      ? h('ul', { class: 'checkpoints' }, ...rows)
      : h('p', { class: 'empty' }, 'no checkpoints yet'),
  );
}

function links(download: Download): HTMLElement {
  return h(
    'span',
    { class: 'links' },
    ...download.files.map((file) =>
      h(
        'a',
        { href: apiUrl(`api/checkpoints/${download.name}/${file}`), download: file },
        file.endsWith('.safetensors') ? 'weights' : 'config',
      ),
    ),
  );
}
