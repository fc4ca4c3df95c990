// The alerts a person received, kept in IndexedDB so the inbox still shows them with no
// network (the service worker keeps the app itself). One database per person on this device;
// signing out of a shared device does not erase them, as a person may need them offline.

/** The alert as devices receive it (the socket's `alert` payload, `GET /me/alerts`). */
export interface AlertPayload {
  alert_id: number;
  msg_type?: string;
  severity: string;
  urgency?: string;
  certainty?: string;
  category?: string;
  security_level?: number | null;
  sent_at: string;
  expires_at: string;
  cancelled_at?: string | null;
  default_language: string;
  translations: Record<string, { title: string; body: string; instructions?: string }>;
}

/** Where this device's copy of the alert stands. */
export type AlertState = 'queued' | 'sent' | 'delivered' | 'read' | 'acknowledged';
const RANK: Record<AlertState, number> = { queued: 0, sent: 1, delivered: 2, read: 3, acknowledged: 4 };

export interface StoredAlert {
  alert_id: number;
  alert: AlertPayload;
  state: AlertState;
  received_at: string;
}

const STORE = 'alerts';

function promised<T>(req: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

export class AlertStore {
  private readonly cache = new Map<number, StoredAlert>();
  private readonly listeners: Array<() => void> = [];

  private constructor(private readonly db: IDBDatabase | null) {}

  /** Opens the person's store and reads what it holds; without IndexedDB, memory only. */
  static async open(userId: number): Promise<AlertStore> {
    let db: IDBDatabase | null = null;
    try {
      const req = indexedDB.open(`vigil-alerts-${userId}`, 1);
      req.onupgradeneeded = () => req.result.createObjectStore(STORE, { keyPath: 'alert_id' });
      db = await promised(req);
    } catch {
      db = null;
    }
    const store = new AlertStore(db);
    if (db) {
      const all = (await promised(db.transaction(STORE).objectStore(STORE).getAll())) as StoredAlert[];
      for (const a of all) store.cache.set(a.alert_id, a);
    }
    return store;
  }

  /** Newest first. */
  all(): StoredAlert[] {
    return [...this.cache.values()].sort((a, b) => Date.parse(b.alert.sent_at) - Date.parse(a.alert.sent_at) || b.alert_id - a.alert_id);
  }

  get(id: number): StoredAlert | undefined {
    return this.cache.get(id);
  }

  onChange(listener: () => void): void {
    this.listeners.push(listener);
  }

  /** Keeps an alert (deduplicated by id); the state only moves forward. Returns true if new. */
  async put(alert: AlertPayload, state: AlertState): Promise<boolean> {
    const old = this.cache.get(alert.alert_id);
    const next: StoredAlert = {
      alert_id: alert.alert_id,
      alert: { ...old?.alert, ...alert, cancelled_at: alert.cancelled_at ?? old?.alert.cancelled_at ?? null },
      state: old && RANK[old.state] > RANK[state] ? old.state : state,
      received_at: old?.received_at ?? new Date().toISOString(),
    };
    await this.write(next);
    return !old;
  }

  async setState(id: number, state: AlertState): Promise<void> {
    const old = this.cache.get(id);
    if (!old || RANK[old.state] >= RANK[state]) return;
    await this.write({ ...old, state });
  }

  async cancel(id: number, at: string): Promise<void> {
    const old = this.cache.get(id);
    if (old) await this.write({ ...old, alert: { ...old.alert, cancelled_at: at } });
  }

  private async write(a: StoredAlert): Promise<void> {
    this.cache.set(a.alert_id, a);
    if (this.db) {
      const tx = this.db.transaction(STORE, 'readwrite');
      tx.objectStore(STORE).put(a);
      await new Promise<void>((resolve, reject) => {
        tx.oncomplete = () => resolve();
        tx.onerror = () => reject(tx.error);
      });
    }
    this.listeners.forEach((l) => l());
  }
}

/** Whether `state` is at least `than`. */
export function reached(state: AlertState, than: AlertState): boolean {
  return RANK[state] >= RANK[than];
}
