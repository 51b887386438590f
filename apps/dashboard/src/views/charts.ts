// The charts: loss (train raw, its moving average, eval), the token loss's
// token accuracy (TRL's mean_token_accuracy: the same three), a preference run's
// reward accuracy (the same three), a KTO run's reward margin (the same three)
// and KL, learning rate, throughput.
import { type Series, renderChart } from '../chart.js';
import { count, num } from '../format.js';
import type { Panel } from '../panel.js';
import type { Point, RunView } from '../run.js';

const CHART_TOUCHES = ['run', 'step', 'resize'] as const;
const CHART_HOST = 'chart-host';

/** A card of train (raw and smoothed) and eval series over the steps: loss, reward accuracy. */
const TRAIN_EVAL_CARD = {
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
} as const satisfies Panel['place'];

/** The raw training series, its moving average, and the eval points as markers. */
function trainAndEval(train: readonly Point[], evaluated: readonly Point[]): Series[] {
  return [
    { name: 'train', points: train, className: 'train-raw' },
    { name: 'train (avg)', points: movingAverage(train, 0.9), className: 'train', legend: true },
    { name: 'eval', points: evaluated, className: 'eval', markers: true },
  ];
}

export const lossPanel: Panel = {
  id: 'chart-loss',
  title: 'Loss',
  touches: [...CHART_TOUCHES, 'eval'],
  place: TRAIN_EVAL_CARD,
  render(el, view) {
    renderChart(el, {
      testId: 'loss-chart',
      height: 240,
      ...xMax(view),
      series: trainAndEval(view.trainLoss, view.evalLoss),
      yFormat: num,
    });
  },
};

/**
 * An accuracy (train and eval, from 0) that only some runs measure: runs of
 * one loss unit, or any run whose steps report it; the card is hidden in the others.
 */
function accuracyPanel(o: {
  id: string;
  title: string;
  testId: string;
  unit: RunView['lossUnit'];
  series: (view: RunView) => [train: readonly Point[], evaluated: readonly Point[]];
}): Panel {
  const shown = (view: RunView) => view.lossUnit === o.unit || o.series(view)[0].length > 0;
  return {
    id: o.id,
    title: o.title,
    touches: [...CHART_TOUCHES, 'eval'],
    place: TRAIN_EVAL_CARD,
    render(el, view) {
      const card = el.closest('article');
      if (card) card.hidden = !shown(view);
      if (!shown(view)) return;
      renderChart(el, {
        testId: o.testId,
        height: 200,
        ...xMax(view),
        series: trainAndEval(...o.series(view)),
        yFromZero: true,
        yFormat: num,
      });
    },
  };
}

/** A run of the token loss, or DPO's chosen responses: TRL's mean_token_accuracy. */
export const tokenAccuracyPanel = accuracyPanel({
  id: 'chart-token-accuracy',
  title: 'Token accuracy',
  testId: 'token-accuracy-chart',
  unit: 'tokens',
  series: (view) => [view.trainTokenAccuracy, view.evalTokenAccuracy],
});

/** A preference run's reward accuracy. */
export const rewardsPanel = accuracyPanel({
  id: 'chart-rewards',
  title: 'Reward accuracy',
  testId: 'rewards-chart',
  unit: 'pairs',
  series: (view) => [view.trainRewardAccuracy, view.evalRewardAccuracy],
});

/** A KTO run's reward margin (train and eval) and KL estimate; hidden in other runs. */
export const ktoPanel: Panel = {
  id: 'chart-kto',
  title: 'KTO reward margin and KL',
  touches: [...CHART_TOUCHES, 'eval'],
  place: {
    ...TRAIN_EVAL_CARD,
    legend: { keys: [...TRAIN_EVAL_CARD.legend.keys, ['lr', 'KL (train)']] },
  },
  render(el, view) {
    const card = el.closest('article');
    if (card) card.hidden = view.lossUnit !== 'examples';
    if (view.lossUnit !== 'examples') return;
    renderChart(el, {
      testId: 'kto-chart',
      height: 200,
      ...xMax(view),
      // The KL first: every step has one (a margin needs both classes in the step's batch).
      series: [
        { name: 'KL', points: view.trainKl, className: 'lr' },
        ...trainAndEval(view.trainRewardMargin, view.evalRewardMargin),
      ],
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
