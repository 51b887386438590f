// The charts: loss (train raw, its moving average, eval), a preference run's
// reward accuracy (the same three), learning rate, throughput.
import { renderChart } from '../chart.js';
import { count, num } from '../format.js';
import type { Panel } from '../panel.js';
import type { Point, RunView } from '../run.js';

const CHART_TOUCHES = ['run', 'step', 'resize'] as const;
const CHART_HOST = 'chart-host';

export const lossPanel: Panel = {
  id: 'chart-loss',
  title: 'Loss',
  touches: [...CHART_TOUCHES, 'eval'],
  place: {
    kind: 'card',
    span: 2,
    hostClass: CHART_HOST,
    legend: {
      keys: [
        ['train', 'train (moving average)'],
        ['train-raw', 'train'],
        ['eval', 'eval'],
      ],
    },
  },
  render(el, view) {
    renderChart(el, {
      testId: 'loss-chart',
      height: 240,
      ...xMax(view),
      series: [
        { name: 'train', points: view.trainLoss, className: 'train-raw' },
        {
          name: 'train (avg)',
          points: movingAverage(view.trainLoss, 0.9),
          className: 'train',
          legend: true,
        },
        { name: 'eval', points: view.evalLoss, className: 'eval', markers: true },
      ],
      yFormat: num,
    });
  },
};

/** A preference run's reward accuracy; the card is hidden in a run of the token loss. */
export const rewardsPanel: Panel = {
  id: 'chart-rewards',
  title: 'Reward accuracy',
  touches: [...CHART_TOUCHES, 'eval'],
  place: {
    kind: 'card',
    span: 2,
    hostClass: CHART_HOST,
    legend: {
      keys: [
        ['train', 'train (moving average)'],
        ['train-raw', 'train'],
        ['eval', 'eval'],
      ],
    },
  },
  render(el, view) {
    const card = el.closest('article');
    if (card) card.hidden = view.lossUnit !== 'pairs';
    if (view.lossUnit !== 'pairs') return;
    renderChart(el, {
      testId: 'rewards-chart',
      height: 200,
      ...xMax(view),
      series: [
        { name: 'train', points: view.trainRewardAccuracy, className: 'train-raw' },
        {
          name: 'train (avg)',
          points: movingAverage(view.trainRewardAccuracy, 0.9),
          className: 'train',
          legend: true,
        },
        { name: 'eval', points: view.evalRewardAccuracy, className: 'eval', markers: true },
      ],
      yFromZero: true,
      yFormat: num,
    });
  },
};

export const lrPanel: Panel = {
  id: 'chart-lr',
  title: 'Learning rate',
  touches: CHART_TOUCHES,
  place: { kind: 'card', hostClass: CHART_HOST },
  render(el, view) {
    renderChart(el, {
      ...xMax(view),
      series: [{ name: 'lr', points: view.lr, className: 'lr' }],
      yFromZero: true,
      yFormat: num,
      height: 200,
    });
  },
};

export const throughputPanel: Panel = {
  id: 'chart-throughput',
  title: 'Throughput',
  touches: CHART_TOUCHES,
  place: { kind: 'card', hostClass: CHART_HOST, legend: { keys: [['tps', 'per second']] } },
  render(el, view) {
    renderChart(el, {
      ...xMax(view),
      series: [{ name: `${view.lossUnit}/s`, points: view.tokensPerSecond, className: 'tps' }],
      yFromZero: true,
      yFormat: count,
      height: 200,
    });
  },
};

/** The x axis runs to the planned last step once the run facts are known. */
function xMax(view: RunView): { xMax?: number } {
  const steps = view.facts?.steps;
  return steps ? { xMax: steps } : {};
}

/** An exponential moving average with bias correction, as TensorBoard smooths. */
function movingAverage(points: readonly Point[], beta: number): Point[] {
  let avg = 0;
  return points.map(([x, y], i) => {
    avg = beta * avg + (1 - beta) * y;
    return [x, avg / (1 - beta ** (i + 1))];
  });
}
