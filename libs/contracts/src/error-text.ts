/** The message of a thrown value for logs and answers: anything can be thrown, not only an Error. */
export function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * ESTALE: GlusterFS's and NFS's answer for a file or folder another client removed meanwhile, where a local
 * disk says ENOENT. libuv has no name for it, so Node reports "Unknown system error -116" (errno -116).
 */
export function isStaleHandle(error: unknown): boolean {
  const { code, errno } = (error ?? {}) as NodeJS.ErrnoException;
  return code === 'ESTALE' || errno === -116;
}
