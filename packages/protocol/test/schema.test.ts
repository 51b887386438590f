// The typed view in src/messages.ts must name exactly the fields of the generated
// code: a field added to or removed from a .proto fails `tsc` on this file
// (the package's typecheck) until messages.ts follows.
import { describe, expect, it } from 'vitest';
import type { lorafleet as pb } from '../src/generated/lorafleet.types.js';
import type { ChunkHeader, ControlBody, ControlMessage, StepTimings } from '../src/index.js';

type Fields<T> = Exclude<keyof T, '$unknowns'>;
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type SameFields<A, B> = Same<Fields<A>, Fields<B>>;
type Body<K extends ControlBody['case']> = Extract<ControlBody, { case: K }>['value'];
type GeneratedBody<K extends ControlBody['case']> = NonNullable<
  pb.v1.ControlMessage.$Properties[K]
>;

const bodies: { [K in ControlBody['case']]: SameFields<Body<K>, GeneratedBody<K>> } = {
  hello: true,
  welcome: true,
  stepPlan: true,
  stepDone: true,
  commit: true,
  abort: true,
  heartbeat: true,
  checkpointRequest: true,
  checkpointDone: true,
  shutdown: true,
  error: true,
  regroup: true,
  regrouped: true,
  stateRequest: true,
  trainerState: true,
  evalRequest: true,
  evalDone: true,
};
const oneofCases: Same<
  ControlBody['case'],
  NonNullable<pb.v1.ControlMessage.$Properties['body']>
> = true;
type EnvelopeFields = Exclude<Fields<pb.v1.ControlMessage.$Properties>, ControlBody['case']>;
const envelope: Same<Fields<ControlMessage>, EnvelopeFields> = true;
const chunk: SameFields<ChunkHeader, pb.v1.Chunk.$Properties> = true;
const timings: SameFields<StepTimings, pb.v1.StepTimings.$Properties> = true;

describe('typed view of the schema', () => {
  it('matches the generated code field for field (checked by tsc)', () => {
    expect([oneofCases, envelope, chunk, timings, ...Object.values(bodies)].every(Boolean)).toBe(
      true,
    );
  });
});
