import { type Hash, createHash } from 'node:crypto';
import { PIECE_LIST_MAX_PIECES } from './piece-list';

/**
 * The sha256 of each `pieceBytes` piece of a byte stream, fed in chunks of any size (a short read of a
 * network file system ends a chunk anywhere): it runs beside the whole image's hash, on the thread that
 * copies. Past `maxPieces` it stops hashing and gives no digests (the image gets no piece list).
 */
export class PieceHasher {
  private current: Hash = createHash('sha256');
  private filled = 0;
  private readonly digests: string[] = [];
  private overflowed = false;

  constructor(
    readonly pieceBytes: number,
    private readonly maxPieces = PIECE_LIST_MAX_PIECES,
  ) {
    if (!Number.isInteger(pieceBytes) || pieceBytes < 1)
      throw new RangeError(`pieceBytes: must be a whole number of at least 1, got ${pieceBytes}`);
  }

  update(chunk: Uint8Array): void {
    let offset = 0;
    while (offset < chunk.length && !this.overflowed) {
      const take = Math.min(this.pieceBytes - this.filled, chunk.length - offset);
      this.current.update(chunk.subarray(offset, offset + take));
      this.filled += take;
      offset += take;
      if (this.filled === this.pieceBytes) this.closePiece();
    }
  }

  /** The digests, the last (short) piece's included; undefined past maxPieces. The hasher is done. */
  finish(): string[] | undefined {
    if (this.filled > 0 && !this.overflowed) this.closePiece();
    return this.overflowed ? undefined : this.digests;
  }

  private closePiece(): void {
    if (this.digests.length >= this.maxPieces) {
      this.overflowed = true;
      this.digests.length = 0;
      return;
    }
    this.digests.push(this.current.digest('hex'));
    this.current = createHash('sha256');
    this.filled = 0;
  }
}
