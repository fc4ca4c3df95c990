import { describe, expect, it } from 'vitest';
import { AlertStore, reached, type AlertPayload } from './alert-store';

const alert = (id: number, sentAt: string): AlertPayload => ({
  alert_id: id,
  severity: 'severe',
  sent_at: sentAt,
  expires_at: '2026-11-23T12:00:00Z',
  default_language: 'en',
  translations: { en: { title: `Alert ${id}`, body: 'Body' } },
});

describe('the alert store (in memory where there is no IndexedDB)', () => {
  it('keeps one copy per alert, newest first, and its state only moves forward', async () => {
    const store = await AlertStore.open(7);
    expect(await store.put(alert(1, '2026-11-22T10:00:00Z'), 'delivered')).toBe(true);
    expect(await store.put(alert(2, '2026-11-22T11:00:00Z'), 'sent')).toBe(true);
    expect(await store.put(alert(1, '2026-11-22T10:00:00Z'), 'sent')).toBe(false);
    expect(store.all().map((a) => a.alert_id)).toEqual([2, 1]);
    expect(store.get(1)?.state).toBe('delivered');
    await store.setState(1, 'acknowledged');
    await store.setState(1, 'read');
    expect(store.get(1)?.state).toBe('acknowledged');
  });

  it('a cancellation sticks when the alert is fetched again without it', async () => {
    const store = await AlertStore.open(8);
    await store.put(alert(3, '2026-11-22T10:00:00Z'), 'delivered');
    await store.cancel(3, '2026-11-22T10:30:00Z');
    await store.put(alert(3, '2026-11-22T10:00:00Z'), 'read');
    expect(store.get(3)?.alert.cancelled_at).toBe('2026-11-22T10:30:00Z');
    expect(store.get(3)?.state).toBe('read');
  });

  it('orders the ledger steps', () => {
    expect(reached('acknowledged', 'read')).toBe(true);
    expect(reached('delivered', 'read')).toBe(false);
    expect(reached('read', 'read')).toBe(true);
  });
});
