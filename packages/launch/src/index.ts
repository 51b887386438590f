export { HostlistError, expandHostlist } from './hostlist.js';
export {
  DEFAULT_PORT,
  type Environment,
  type ExplicitPlacement,
  LAUNCHERS,
  LAUNCHER_SOURCES,
  type LaunchSource,
  type Launcher,
  LaunchError,
  type Placement,
  describePlacement,
  resolvePlacement,
  slurmPort,
} from './placement.js';
export { localAddressToward, resolveHost } from './route.js';
