// A worker started by a cluster launcher whose compute backend cannot start
// (no GPU adapter, no driver) tells the coordinator so, instead of saying
// Hello: the engine would start the same task the same way, so the run cannot
// get this rank, and the coordinator fails it at once with this reason rather
// than after --join-timeout (ERROR_CODE_BACKEND in control.proto).
import { hostname } from 'node:os';
import { CoordinatorLink, type LinkCurve } from './coordinator-link.js';

export interface BackendReport {
  coordinator: string;
  /** This worker's rank under the launcher. */
  rank: number;
  backend: string;
  /** Why the backend cannot start (the error's message). */
  reason: string;
  /** How long to wait for the coordinator's answer (it may start after this task). */
  timeoutMs: number;
  curve?: LinkCurve;
  log: (line: string) => void;
}

/** Sends the report and waits for the coordinator's answer; false when it never came. Never throws. */
export async function reportBackendFailure(report: BackendReport): Promise<boolean> {
  let link: CoordinatorLink | undefined;
  try {
    link = new CoordinatorLink(report.coordinator, report.timeoutMs, report.log, report.curve);
    const { rank, backend, reason } = report;
    await link.sendError('backend', `rank ${rank} on ${hostname()} (${backend}): ${reason}`);
    const answer = await link.receive('its answer to this report', report.timeoutMs);
    const noted = answer.body.case === 'error' && answer.body.value.code === 'backend';
    if (noted) report.log('told the coordinator, which stops the run');
    return noted;
  } catch (error) {
    report.log(`could not tell the coordinator: ${(error as Error).message}`);
    return false;
  } finally {
    link?.close();
  }
}
