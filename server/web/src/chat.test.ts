import { describe, expect, it } from 'vitest';
import { newClientId } from './chat';

describe('chat client ids', () => {
  it('use the alphabet and length the server accepts, and do not repeat', () => {
    const ids = Array.from({ length: 500 }, newClientId);
    for (const id of ids) expect(id).toMatch(/^[A-Za-z0-9_-]{1,64}$/);
    expect(new Set(ids).size).toBe(ids.length);
  });
});
