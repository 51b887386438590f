// Control-plane framing: one ControlMessage per ZeroMQ frame. Decoding never
// throws: size first, then protobuf, then version, then every field.
import { lorafleet } from './generated/lorafleet.js';
import type { lorafleet as pb } from './generated/lorafleet.types.js';
import { bodies } from './control-bodies.js';
import { InvalidField, runId } from './fields.js';
import {
  PROTOCOL_VERSION,
  resolveLimits,
  fail,
  type DecodeResult,
  type WireLimits,
} from './limits.js';
import type { ControlBody, ControlMessage } from './messages.js';

/** What a sender fills in; the protocol version defaults to this build's. */
export type ControlMessageInit = Omit<ControlMessage, 'protocolVersion'> & {
  protocolVersion?: number;
};

/**
 * Encodes a control message. Throws (a programming error, not a wire error) when the message
 * would not pass decodeControl on the other side, so invalid messages never leave this process.
 */
export function encodeControl(msg: ControlMessageInit, limits?: Partial<WireLimits>): Uint8Array {
  const body = msg.body;
  const encode = bodies[body.case].encode as (v: typeof body.value) => object;
  const bytes = lorafleet.v1.ControlMessage.encode({
    protocolVersion: msg.protocolVersion ?? PROTOCOL_VERSION,
    runId: msg.runId,
    [body.case]: encode(body.value),
  }).finish();
  const check = decodeControl(bytes, limits);
  if (!check.ok && check.error.kind !== 'version') {
    throw new Error(
      `encodeControl: refusing to send an invalid ${body.case}: ${check.error.message}`,
    );
  }
  return bytes;
}

export function decodeControl(
  bytes: Uint8Array,
  limits?: Partial<WireLimits>,
): DecodeResult<ControlMessage> {
  const lim = resolveLimits(limits);
  if (!(bytes instanceof Uint8Array)) return fail('malformed', 'control frame is not bytes');
  if (bytes.length > lim.maxControlBytes) {
    return fail(
      'too-large',
      `control frame of ${bytes.length} bytes exceeds ${lim.maxControlBytes}`,
    );
  }
  let raw: pb.v1.ControlMessage;
  try {
    raw = lorafleet.v1.ControlMessage.decode(bytes);
  } catch (error) {
    return fail('malformed', `control frame does not parse: ${(error as Error).message}`);
  }
  if (raw.protocolVersion !== PROTOCOL_VERSION) {
    return fail(
      'version',
      `protocol version ${raw.protocolVersion}, this build speaks ${PROTOCOL_VERSION}: upgrade the older side`,
    );
  }
  try {
    const kind = raw.body;
    // A body case this build does not know (newer sender) decodes as an unknown field: no case.
    if (kind === undefined) throw new InvalidField('body is missing or of an unknown type');
    const props = raw[kind];
    if (props === null || props === undefined) throw new InvalidField(`body ${kind} is empty`);
    const decode = bodies[kind].decode as (p: typeof props, l: WireLimits) => ControlBody['value'];
    const body = { case: kind, value: decode(props, lim) } as ControlBody;
    const message = {
      protocolVersion: raw.protocolVersion,
      runId: runId(raw.runId, 'runId'),
      body,
    };
    return { ok: true, message };
  } catch (error) {
    if (error instanceof InvalidField) return fail('invalid', error.message);
    return fail('malformed', `control frame is inconsistent: ${(error as Error).message}`);
  }
}
