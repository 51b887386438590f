// The coordinator's control socket: a ROUTER bound where the fleet's workers
// reach it (loopback for spawned workers, the --listen endpoint otherwise),
// with CURVE and the ZAP handler that admits --authorized-keys when asked;
// and the heartbeat the coordinator sends its workers.
import { Router } from 'zeromq';
import { CurveAuthenticator, curveServerOptions } from '@lorafleet/collective';
import type { ControlBody } from '@lorafleet/protocol';
import { FleetError } from './roster.js';
import type { FleetOptions } from './fleet.js';

/** Binds the ROUTER (and, with CURVE, its authenticator first); errors name the endpoint. */
export async function openControlRouter(
  options: FleetOptions,
  lingerMs: number,
): Promise<{ router: Router; auth: CurveAuthenticator | undefined }> {
  const { membership } = options;
  // Spawned fleets stay on loopback; --listen elsewhere needs CURVE or
  // --allow-remote (checked by the caller).
  // Before the ROUTER exists: a CURVE server with no ZAP handler would admit any key.
  const auth = options.curve
    ? await CurveAuthenticator.acquire({
        keys: options.curve.authorizedKeys,
        serverLingerMs: lingerMs,
        onRefusal: ({ reason }) => {
          options.log(`coordinator: ${reason} (not in --authorized-keys)`);
          options.onEvent?.('warn', reason);
        },
      })
    : undefined;
  const router = new Router({
    mandatory: true,
    linger: lingerMs,
    sendTimeout: 10_000,
    // Bounded buffering per peer: a slow or hostile worker cannot grow our memory.
    sendHighWaterMark: 1000,
    receiveHighWaterMark: 1000,
    maxMessageSize: (1 << 20) + 4096,
    ...(options.curve && auth && curveServerOptions(options.curve.keyPair, auth.domain)),
  });
  const endpoint = membership.kind === 'listen' ? membership.endpoint : 'tcp://127.0.0.1:*';
  try {
    await router.bind(endpoint);
  } catch (error) {
    router.close();
    auth?.close();
    throw new FleetError(`cannot listen on ${endpoint}: ${(error as Error).message}`);
  }
  return { router, auth };
}

/** The coordinator's heartbeat: it says only that the coordinator is alive. */
export function coordinatorHeartbeat(): ControlBody {
  return {
    case: 'heartbeat',
    value: {
      sentAtMs: Date.now(),
      state: 'unspecified',
      rssBytes: 0,
      stepsDone: 0,
      heartbeatId: '',
      progress: 0,
      stalledMs: 0,
      computeLimitMs: 0,
      warmingUp: false,
    },
  };
}
