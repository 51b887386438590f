// The three charts: loss (train raw, its moving average, eval), learning rate, throughput.
import { renderChart } from '../chart.js';
import { count, num } from '../format.js';
import type { Point, RunView } from '../run.js';

export interface ChartHosts {
  loss: HTMLElement;
  lr: HTMLElement;
  throughput: HTMLElement;
}

export function renderCharts(hosts: ChartHosts, view: RunView): void {
  const xMax = view.facts?.steps;
  renderChart(hosts.loss, {
    testId: 'loss-chart',
    height: 240,
    ...(xMax ? { xMax } : {}),
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
  renderChart(hosts.lr, {
    ...(xMax ? { xMax } : {}),
    series: [{ name: 'lr', points: view.lr, className: 'lr' }],
    yFromZero: true,
    yFormat: num,
    height: 200,
  });
  renderChart(hosts.throughput, {
    ...(xMax ? { xMax } : {}),
    series: [{ name: 'tokens/s', points: view.tokensPerSecond, className: 'tps' }],
    yFromZero: true,
    yFormat: count,
    height: 200,
  });
}

/** An exponential moving average with bias correction, as TensorBoard smooths. */
function movingAverage(points: readonly Point[], beta: number): Point[] {
  let avg = 0;
  return points.map(([x, y], i) => {
    avg = beta * avg + (1 - beta) * y;
    return [x, avg / (1 - beta ** (i + 1))];
  });
}
