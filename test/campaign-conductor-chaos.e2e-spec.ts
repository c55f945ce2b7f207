import { campaignRun } from './campaigns/campaign-kit';
import { describeConductorChaos } from './campaigns/conductor-chaos-spec';

/*
 * Campaign 1 (issue 8): conductor chaos on CAMPAIGN_FS (a local folder unless set). CI size here;
 * `npm run campaign` runs it large. Replay a failure with the seed it printed:
 * CAMPAIGN_SEED=<seed> npx vitest run test/campaign-conductor-chaos.e2e-spec.ts
 */
describeConductorChaos(campaignRun('conductor-chaos'));
