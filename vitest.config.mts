import swc from 'unplugin-swc';
import { configDefaults, defineConfig } from 'vitest/config';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

/** Fast specs beside the code: no broker, no child processes; `npm run test:unit` runs these alone. */
const UNIT = ['apps/**/*.spec.ts', 'libs/**/*.spec.ts'];
/** The lock protocol's model check runs spin (tens of seconds): a spec of its own, outside the fast tier. */
const MODEL = ['libs/locking/model/**/*.spec.ts'];
/** e2e files that restart RabbitMQ itself (or cut every connection): each runs alone, one after the other. */
const BROKER_WIDE = ['test/conductor-broker-restart.e2e-spec.ts', 'test/campaign-broker-faults.e2e-spec.ts'];
/**
 * The fault and bad-input campaigns (test/campaigns/README.md): they load the disk and both cores for
 * half a minute each, which would stretch the timing of the other files' multi-process tests; they run
 * in a group of their own (two at a time), after those and before the broker-wide files.
 */
const CAMPAIGNS = ['test/campaign-*.e2e-spec.ts'];
/**
 * The multi-host bed and its campaign (test/support/hosts; the campaign at CI size, about a minute and a
 * half): each runs a RabbitMQ cluster of its own and several simulated hosts (their names, subnets and
 * ports are the bed's own, so two beds never meet). They mostly wait on their faults (about 0.75 of a
 * core for the group), so they share the campaigns' turn and its two workers.
 */
const HOSTS = ['test/hosts-*.e2e-spec.ts'];
/**
 * The CephFS and GlusterFS beds without a broker cluster (test/support/shared-fs): they run with the
 * campaigns, two at a time, rather than in the one-at-a-time hosts group (npm test's 15-minute budget).
 */
const FS_BEDS = [
  'test/hosts-shared-fs.e2e-spec.ts',
  'test/hosts-shared-fs-more.e2e-spec.ts',
  'test/hosts-gluster-cache-root-check.e2e-spec.ts',
  'test/hosts-cephfs-partial-reads.e2e-spec.ts',
];
/**
 * Files only `npm run campaign` runs (it sets CAMPAIGN_SIZE): the CephFS lock race (a minute on its own,
 * with a timing bound on lock hand-off, issue 24) and the multi-host bed's own checks (half a minute, one
 * at a time; the hosts campaign runs on the same bed), and more checks of the CephFS and GlusterFS beds stay
 * out of `npm test`'s 15-minute budget.
 */
const CAMPAIGN_ONLY = process.env.CAMPAIGN_SIZE
  ? []
  : [
      'test/hosts-cephfs-lock-race.e2e-spec.ts',
      'test/hosts-bed.e2e-spec.ts',
      'test/hosts-shared-fs-more.e2e-spec.ts',
    ];

/**
 * Files of the first turn (specs beside the code, the e2e files) run four at a time: measured on a
 * 2-core machine they used 1.27 cores with two at a time (the rest is waiting on processes, the broker
 * and timers), so more files fill the idle share instead of stretching the suite. Three at a time took
 * about 410 s of this turn on a slower machine (sha256 of 1 GiB: 733 ms against 516-639 ms before), and
 * the suite 908 s.
 */
const FAST_TURN = { maxWorkers: 4 };

/**
 * The longest files of each turn, longest first (seconds in a full run at 3bb7b90 on a 2-core machine).
 * Without a cache of earlier durations (a fresh clone, as in CI) vitest starts the largest files first, and
 * a short file that runs long (a campaign on a bed is ten lines) started last and ran on alone at its
 * turn's end while the other workers idled.
 */
const LONGEST_FIRST = [
  'test/locking-processes.e2e-spec.ts', // 108
  'test/hosts-campaign.e2e-spec.ts', // 103
  'test/campaign-lock-first-use.e2e-spec.ts', // 78
  'test/agent-copy.e2e-spec.ts', // 74
  'test/campaign-conductor-chaos.e2e-spec.ts', // 70
  'test/campaign-mixed-versions.e2e-spec.ts', // 58
  'libs/locking/model/lock-protocol.spec.ts', // 56
  'test/campaign-bad-input.e2e-spec.ts', // 50
  'test/campaign-pieces.e2e-spec.ts', // 49
  'test/image-store-resume.e2e-spec.ts', // 40
  'test/release-artefact.e2e-spec.ts', // 38
  'test/admin-page.e2e-spec.ts', // 37
  'test/hosts-cephfs-partial-reads.e2e-spec.ts', // 35
];

/** vitest's order (durations of earlier runs when it has them, else size), the known longest files first. */
class LongestFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const rank = (spec: TestSpecification) => {
      const index = LONGEST_FIRST.findIndex((file) => spec.moduleId.endsWith(`/${file}`));
      return index === -1 ? LONGEST_FIRST.length : index;
    };
    // Array.prototype.sort is stable: the rest keeps vitest's order.
    return sorted.sort((a, b) => rank(a) - rank(b));
  }
}

// SWC instead of esbuild: Nest's dependency injection needs emitDecoratorMetadata.
// (.swcrc is for the build and leaves specs out, so the test transform is configured here.)
export default defineConfig({
  plugins: [
    swc.vite({
      swcrc: false,
      module: { type: 'es6' },
      jsc: {
        target: 'es2022',
        parser: { syntax: 'typescript', decorators: true },
        transform: { legacyDecorator: true, decoratorMetadata: true },
        keepClassNames: true,
      },
    }),
  ],
  resolve: { tsconfigPaths: true },
  test: {
    pool: 'forks',
    sequence: { sequencer: LongestFirst },
    testTimeout: 120_000,
    hookTimeout: 60_000,
    // Two files at a time where the multi-process files load both cores (campaigns, beds); see FAST_TURN.
    maxWorkers: 2,
    projects: [
      {
        extends: true,
        test: {
          // The fast tier alone: `npm run test:unit` (vitest --project unit), specs beside the code only.
          name: 'unit',
          ...FAST_TURN,
          include: UNIT,
          exclude: [...configDefaults.exclude, ...MODEL],
        },
      },
      {
        extends: true,
        test: {
          name: 'all',
          ...FAST_TURN,
          include: ['test/**/*.e2e-spec.ts', ...MODEL],
          exclude: [...configDefaults.exclude, ...BROKER_WIDE, ...CAMPAIGNS, ...HOSTS],
        },
      },
      {
        extends: true,
        test: {
          name: 'campaigns',
          include: [...CAMPAIGNS, ...FS_BEDS],
          exclude: [...configDefaults.exclude, ...BROKER_WIDE, ...CAMPAIGN_ONLY],
          sequence: { groupOrder: 1 },
        },
      },
      {
        extends: true,
        test: {
          name: 'hosts',
          include: HOSTS,
          exclude: [...configDefaults.exclude, ...FS_BEDS, ...CAMPAIGN_ONLY],
          sequence: { groupOrder: 1 },
        },
      },
      // These stop the whole broker (rabbitmqctl stop_app), cutting every client's connection: they run
      // alone, after every other file (a higher groupOrder starts only once the lower groups are done), and
      // one group each, so that two of them never run at once either.
      ...BROKER_WIDE.map((file, i) => ({
        extends: true as const,
        test: { name: `broker-wide-${i + 1}`, include: [file], sequence: { groupOrder: i + 2 } },
      })),
    ],
  },
});
