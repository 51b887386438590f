// A dashboard panel: one part of the page, what makes it stale, and how it
// draws itself from the RunView. main.ts lays the page out from one array of
// these and redraws a panel when something it `touches` changes.
import type { RunEvent } from '@lorafleet/run-events';
import type { RunView } from './run.js';

/** What a panel depends on: a run event type, or a change outside the event stream. */
export type Touch =
  | RunEvent['type']
  /** Ages and elapsed time move every second. */
  | 'clock'
  /** The event stream connects, drops or reconnects. */
  | 'connection'
  /** The adapters on disk (GET /api/state) changed. */
  | 'downloads'
  /** The panel's element changed size. */
  | 'resize';

/** A legend in a card's heading: coloured keys, or a muted note. */
export type Legend = { keys: [className: string, text: string][] } | { note: string };

/** Where a panel sits: the page's top bar, the strip of figures, or a card of the grid. */
export type Place =
  | { kind: 'top' }
  | { kind: 'strip'; label: string }
  | { kind: 'card'; span?: 2 | 3; legend?: Legend; hostClass?: string };

export interface Panel {
  /** The id of the element it draws into (unique on the page). */
  id: string;
  /** A card's heading. */
  title: string;
  touches: readonly Touch[];
  render(el: HTMLElement, view: RunView): void;
  place: Place;
}
