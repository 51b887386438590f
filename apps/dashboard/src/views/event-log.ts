// Joins, leaves, checkpoints, warnings and errors, newest first.
import { h, mount } from '../dom.js';
import { clock } from '../format.js';
import type { Panel } from '../panel.js';
import type { RunView } from '../run.js';

const SHOWN = 300;

export const logPanel: Panel = {
  id: 'log',
  title: 'Events',
  touches: ['run', 'checkpoint', 'log', 'end'],
  place: { kind: 'card', span: 2, hostClass: 'log-host' },
  render: renderLog,
};

function renderLog(el: HTMLElement, view: RunView): void {
  const lines = view.log.slice(-SHOWN).reverse();
  mount(
    el,
    lines.length === 0
      ? h('p', { class: 'empty' }, 'nothing yet')
      : h(
          'ol',
          { class: 'log' },
          ...lines.map((line) =>
            h(
              'li',
              { class: `level-${line.level}` },
              h('time', {}, clock(line.time)),
              h('span', { class: 'level' }, line.level),
              h('span', { class: 'message' }, line.message),
            ),
          ),
        ),
  );
}
