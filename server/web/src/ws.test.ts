import { describe, expect, it } from 'vitest';
import { backoffMs } from './ws';

describe('reconnection backoff', () => {
  it('grows, is jittered, and is capped at about 30 s', () => {
    expect(backoffMs(0, () => 0)).toBe(250);
    expect(backoffMs(0, () => 1)).toBe(750);
    expect(backoffMs(3, () => 1)).toBe(250 + 4000);
    expect(backoffMs(50, () => 1)).toBe(250 + 30_000);
    const spread = new Set(Array.from({ length: 20 }, () => backoffMs(4)));
    expect(spread.size).toBeGreaterThan(1);
  });
});
