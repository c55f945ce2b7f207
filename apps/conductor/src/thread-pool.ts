/**
 * The size of libuv's thread pool for the conductor, unless UV_THREADPOOL_SIZE is set. Node runs every
 * file-system call of a process on that pool, 4 threads by default, in one FIFO queue; on a network file
 * system each call is a round trip (a heartbeat's stat and utimes are MDS requests on CephFS), so with 4
 * threads a conductor's heartbeats waited behind its copies' reads and writes and its other locks' beats
 * until their locks were lost. Measured on the large pieces campaign on CephFS (seed 27201, 3 conductors
 * with 10 copies each): with 4 threads 2,474 locks lost and 93 requests out of retries; with 16, 57 and 0.
 * Once a conductor admitted the readers of one source together, its copies ran in step and queued more
 * calls at once: the same seed lost 124 and 182 locks with 16 threads, each loss a heartbeat whose stat
 * waited 1.8 s (median) unanswered; with 64, 64 locks (about half of them the campaign's pauses'), and
 * every request answered. The pool's threads only wait on the kernel: more of them cost a little memory
 * (their stacks are reserved, not used), not CPU.
 */
export const CONDUCTOR_THREAD_POOL_SIZE = 64;

// libuv reads the variable once, when the pool is first used: main.ts imports this module first.
process.env.UV_THREADPOOL_SIZE ||= String(CONDUCTOR_THREAD_POOL_SIZE);
