/*
 * The conductor's public entry for code outside the app (bench/, and test/ for the CACHE_ROOT check): the
 * copy composition for in-process runs, and the process entry with its one seam (which locks a copy takes).
 */
export { CopyWorkflow, type CopyLockPlan, nodeLocalLocks } from './copy/copy-workflow';
export { ImageHolderIndex } from './copy/holder-index';
export { SourceSelector } from './copy/source-selector';
export { NodeBandwidth } from './copy/node-bandwidth';
export { type ConductorSeams } from './compose-conductor';
export { main } from './main';
export { CacheRootCheck, type CacheRootReport } from './cache-root/cache-root-check';
