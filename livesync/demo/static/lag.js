// How far the screen is behind the writers: for each transaction, the time from the
// writer's clock (kpi_seconds.written_at, stamped in the writing transaction) to the frame
// that drew it. Writer and browser share a clock when they share a machine, as in the demo
// and the browser tests; across machines the figure includes their clock offset.

export class LagMeter {
  constructor(size = 20_000) {
    this.size = size;
    this.samples = [];
    this.pending = [];
  }

  /** A transaction written at `writtenAt` (Unix seconds) has reached the client. */
  arrived(writtenAt) {
    if (typeof writtenAt === 'number' && writtenAt > 0) this.pending.push(writtenAt);
  }

  /** The frame that shows everything that arrived is being drawn now. */
  drawn(now = Date.now()) {
    for (const writtenAt of this.pending) this.samples.push(now - writtenAt * 1000);
    this.pending.length = 0;
    if (this.samples.length > this.size) this.samples.splice(0, this.samples.length - this.size);
  }

  reset() {
    this.samples.length = 0;
    this.pending.length = 0;
  }

  /** `{count, p50, p99, max}` in milliseconds over the kept samples (the last `last`). */
  stats(last = this.size) {
    const sorted = this.samples.slice(-last).sort((a, b) => a - b);
    const at = (q) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : NaN);
    return { count: sorted.length, p50: at(0.5), p99: at(0.99), max: sorted.at(-1) ?? NaN };
  }
}
