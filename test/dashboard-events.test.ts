// The dashboard keeps its own copy of the run event types (it talks to the
// coordinator over HTTP only). This file fails the typecheck of test/
// when the two drift apart, so a change to observe/events.ts must reach
// apps/dashboard/src/events.ts too.
import { describe, expect, it } from 'vitest';
import type * as Dashboard from '../apps/dashboard/src/events.js';
import type * as Coordinator from '../apps/coordinator/src/observe/events.js';

type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;

const agree: {
  facts: Same<Coordinator.RunFacts, Dashboard.RunFacts>;
  worker: Same<Coordinator.WorkerInfo, Dashboard.WorkerInfo>;
  event: Same<Coordinator.RunEvent, Dashboard.RunEvent>;
} = { facts: true, worker: true, event: true };

describe('run events', () => {
  it('the dashboard reads exactly the event types the coordinator writes', () => {
    expect(agree).toEqual({ facts: true, worker: true, event: true });
  });
});
