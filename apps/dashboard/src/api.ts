// The coordinator's read-only API, with the page's ?token= passed along.
import type { Download, RunEvent } from '@lorafleet/run-events';

const token = new URLSearchParams(location.search).get('token');

/** An API path with the token, relative to the page (the server may sit under a prefix). */
export function apiUrl(path: string): string {
  const url = `./${path.replace(/^\//, '')}`;
  return token === null
    ? url
    : `${url}${url.includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}`;
}

export interface StreamHandlers {
  /** A fresh history follows: forget what was shown. */
  onReset(): void;
  onEvents(events: RunEvent[]): void;
  onConnection(state: 'live' | 'reconnecting'): void;
}

/** Follows /api/events; EventSource reconnects by itself, resuming after the last event id. */
export function followEvents(handlers: StreamHandlers): () => void {
  const source = new EventSource(apiUrl('api/events'));
  // Events arrive in bursts (the whole history at once): hand them over per task, not one by one.
  let batch: RunEvent[] = [];
  let scheduled = false;
  source.addEventListener('reset', () => {
    batch = [];
    handlers.onReset();
  });
  const flush = () => {
    scheduled = false;
    if (batch.length === 0) return;
    const events = batch;
    batch = [];
    handlers.onEvents(events);
  };
  source.onmessage = (message: MessageEvent<string>) => {
    batch.push(JSON.parse(message.data) as RunEvent);
    if (scheduled) return;
    scheduled = true;
    setTimeout(flush, 0);
  };
  source.onopen = () => handlers.onConnection('live');
  // Events received before the drop come first: after the run's `end`, a drop means its
  // coordinator has exited, and the page must know that before it decides to reconnect.
  source.onerror = () => {
    flush();
    handlers.onConnection('reconnecting');
  };
  return () => source.close();
}

export async function fetchDownloads(): Promise<Download[]> {
  const response = await fetch(apiUrl('api/state'), { cache: 'no-store' });
  if (!response.ok) throw new Error(`GET /api/state: ${response.status}`);
  return ((await response.json()) as { downloads: Download[] }).downloads;
}
