/** The cluster-manager layer of the sf_* API: tickets for clone slots on hosts. See docs/cluster.md. */
export * from './types.js';
export * from './errors.js';
export { InternalClusterManager, type HostCapacity } from './internal.js';
export { SlurmClusterManager, type SlurmManagerOptions } from './slurm/manager.js';
export { SlurmCommandError } from './slurm/commands.js';
export { GridEngineClusterManager, type GridEngineManagerOptions } from './gridengine/manager.js';
export { SgeCommandError } from './gridengine/commands.js';
