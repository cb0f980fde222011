// A fixed-bucket latency histogram: recording is one array increment, so it
// costs nothing next to receiving a frame, and percentiles are exact to 0.1 ms.

const RESOLUTION_MS = 0.1;

export class Histogram {
  constructor(maxMs = 30_000) {
    this.buckets = new Uint32Array(Math.ceil(maxMs / RESOLUTION_MS) + 1);
    this.count = 0;
    this.sum = 0;
    this.max = 0;
  }

  record(ms) {
    const value = ms < 0 ? 0 : ms;
    const last = this.buckets.length - 1;
    const bucket = Math.min(last, Math.floor(value / RESOLUTION_MS));
    this.buckets[bucket] += 1;
    this.count += 1;
    this.sum += value;
    if (value > this.max) this.max = value;
  }

  percentile(p) {
    if (this.count === 0) return null;
    const rank = Math.max(1, Math.ceil((p / 100) * this.count));
    let seen = 0;
    for (let i = 0; i < this.buckets.length; i += 1) {
      seen += this.buckets[i];
      if (seen >= rank) return round((i + 1) * RESOLUTION_MS);
    }
    return round(this.max);
  }

  summary() {
    return {
      count: this.count,
      p50_ms: this.percentile(50),
      p90_ms: this.percentile(90),
      p99_ms: this.percentile(99),
      max_ms: this.count ? round(this.max) : null,
      mean_ms: this.count ? round(this.sum / this.count) : null,
    };
  }
}

function round(ms) {
  return Math.round(ms * 100) / 100;
}
