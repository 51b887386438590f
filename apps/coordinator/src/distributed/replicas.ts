// The coordinator's check after every step (DESIGN.md, "The step", 5): each
// rank reports the step it was planned and the same parameter hash. A
// difference is an error naming the ranks, never ignored.
import type { StepDone } from '@lorafleet/protocol';
import { hashHex } from '@lorafleet/worker';
import { FleetError } from './fleet.js';

/** Replicas must stay bitwise identical; a difference is an error, never ignored. */
export function checkReplicas(
  step: number,
  reports: readonly Pick<StepDone, 'step' | 'replicaHash'>[],
): void {
  reports.forEach((r, rank) => {
    if (r.step !== step) {
      throw new FleetError(`rank ${rank} reported step ${r.step} where step ${step} was planned`);
    }
  });
  const groups = new Map<string, number[]>();
  reports.forEach((r, rank) => {
    const hex = hashHex(r.replicaHash);
    groups.set(hex, [...(groups.get(hex) ?? []), rank]);
  });
  if (groups.size > 1) {
    const parts = [...groups].map(
      ([hex, ranks]) => `rank${ranks.length > 1 ? 's' : ''} ${ranks.join(', ')}: ${hex}`,
    );
    throw new FleetError(
      `step ${step}: the replicas diverged (parameter hashes differ: ${parts.join('; ')}); ` +
        'every rank must hold bitwise-identical LoRA parameters after each step',
    );
  }
}
