import { campaignRun } from './campaigns/campaign-kit';
import { describeConductorChaos } from './campaigns/conductor-chaos-spec';

/*
 * The conductor chaos campaign at CI size on a CephFS bed of its own (issue 24: a safety campaign on a
 * real shared file system in every `npm test`), its conductors on two ceph-fuse clients. Large and on
 * GlusterFS: `npm run campaign -- --fs cephfs|glusterfs --only chaos`. Replay a failure with the seed it
 * printed: CAMPAIGN_SEED=<seed> npx vitest run test/campaign-conductor-chaos-cephfs.e2e-spec.ts
 */
describeConductorChaos(campaignRun('conductor-chaos', { fs: 'cephfs' }));
