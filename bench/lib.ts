/** Shared helpers of the benchmarks: interleaved A/B runs, medians, result rows. */

/** Result rows printed again as a summary at the end. */
export const rows: string[] = [];

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/**
 * Run `a` and `b` alternately `rounds` times; each returns a duration. Medians of both, and the
 * median of the paired ratios b/a: each pair runs back to back, so the VM's drift (±30% over
 * minutes) cancels out of the ratio.
 */
export async function ab(
  rounds: number,
  a: () => Promise<number>,
  b: () => Promise<number>,
): Promise<[number, number, number]> {
  await a();
  await b(); // warm-up
  const ra: number[] = [];
  const rb: number[] = [];
  for (let i = 0; i < rounds; i++) {
    ra.push(await a());
    rb.push(await b());
    if (process.env.BENCH_VERBOSE)
      console.log(`  round ${i}: a ${ra[i]!.toFixed(1)} ms, b ${rb[i]!.toFixed(1)} ms`);
  }
  return [median(ra), median(rb), median(rb.map((x, i) => x / ra[i]!))];
}

export async function timed(fn: () => Promise<void>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

export function row(what: string, raw: string, ours: string, ratio: number, goal: string, ok: boolean): void {
  const verdict = goal === 'measure' ? '' : ok ? 'met' : 'NOT met';
  const line = `| ${what} | ${raw} | ${ours} | ${ratio.toFixed(2)}x | ${goal} | ${verdict} |`;
  rows.push(line);
  console.log(line);
}
