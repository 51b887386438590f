// The control plane's request/reply pairs, declared once: what the coordinator
// asks a worker and the body the worker answers with. The coordinator awaits
// these replies; after an abort or a lost peer, any of them may still be in
// flight from the interrupted exchange (see REPLIES).
import type { ControlBody } from './messages.js';

type Case = ControlBody['case'];

/** Coordinator request -> the worker's reply. */
export const REPLY_TO = {
  stepPlan: 'stepDone',
  evalRequest: 'evalDone',
  checkpointRequest: 'checkpointDone',
  stateRequest: 'trainerState',
  regroup: 'regrouped',
} as const satisfies Partial<Record<Case, Case>>;

export type Request = keyof typeof REPLY_TO;
export type Reply = (typeof REPLY_TO)[Request];

/** Every body a worker sends in answer to a coordinator request. */
export const REPLIES: readonly Reply[] = [...new Set(Object.values(REPLY_TO))];
