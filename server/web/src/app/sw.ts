// The staff app's service worker (scope /app/): keeps the app's own files so that it opens
// without a network, and never caches the API; shows a notification for each web push (an
// alert's title, a roll-call reminder) and opens the app's inbox when it is clicked.
// Self-contained (no imports): it is built as one classic script. The build fills in PRECACHE
// and VERSION (vite.config.ts).

interface ExtendableEvent extends Event {
  waitUntil(promise: Promise<unknown>): void;
}
interface FetchEvent extends ExtendableEvent {
  readonly request: Request;
  respondWith(response: Promise<Response> | Response): void;
}
interface PushEvent extends ExtendableEvent {
  readonly data: { json(): unknown; text(): string } | null;
}
interface NotificationEvent extends ExtendableEvent {
  readonly notification: Notification & { close(): void; data: unknown };
}
interface WindowClient {
  url: string;
  focus(): Promise<WindowClient>;
  navigate(url: string): Promise<WindowClient | null>;
}
interface WorkerScope {
  skipWaiting(): Promise<void>;
  clients: {
    claim(): Promise<void>;
    matchAll(options: { type: 'window'; includeUncontrolled: boolean }): Promise<WindowClient[]>;
    openWindow(url: string): Promise<WindowClient | null>;
  };
  registration: { showNotification(title: string, options: NotificationOptions & { data?: unknown }): Promise<void> };
  addEventListener(type: 'install' | 'activate', listener: (e: ExtendableEvent) => void): void;
  addEventListener(type: 'fetch', listener: (e: FetchEvent) => void): void;
  addEventListener(type: 'push', listener: (e: PushEvent) => void): void;
  addEventListener(type: 'notificationclick', listener: (e: NotificationEvent) => void): void;
}

/** What the server pushes (alerts/fallback.rs, rollcall/reminders.rs). */
interface PushPayload {
  type?: string;
  alert_id?: number;
  rollcall_id?: number;
  title?: string;
  body?: string;
}

const scope = self as unknown as WorkerScope;
const PRECACHE = '__VIGIL_PRECACHE__' as unknown as string[];
const VERSION = '__VIGIL_VERSION__';
const CACHE = `vigil-app-${VERSION}`;

scope.addEventListener('install', (event) => {
  event.waitUntil(
    caches
      .open(CACHE)
      .then((cache) => cache.addAll(Array.isArray(PRECACHE) ? PRECACHE : ['/app/']))
      .then(() => scope.skipWaiting()),
  );
});

scope.addEventListener('activate', (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith('vigil-app-') && k !== CACHE).map((k) => caches.delete(k))))
      .then(() => scope.clients.claim()),
  );
});

scope.addEventListener('fetch', (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== 'GET' || url.origin !== location.origin || url.pathname.startsWith('/api/')) return;
  if (request.mode === 'navigate') {
    // The page itself: fresh when online, the cached shell when not.
    event.respondWith(
      fetch(request).catch(async () => (await caches.match('/app/', { cacheName: CACHE })) ?? Response.error()),
    );
    return;
  }
  if (url.pathname.startsWith('/assets/') || url.pathname.startsWith('/app/')) {
    // Hashed assets never change; the rest is refreshed on the next install.
    event.respondWith(
      caches.match(request, { cacheName: CACHE }).then(
        (hit) =>
          hit ??
          fetch(request).then(async (res) => {
            if (res.ok && url.pathname.startsWith('/assets/')) await (await caches.open(CACHE)).put(request, res.clone());
            return res;
          }),
      ),
    );
  }
});

scope.addEventListener('push', (event) => {
  let p: PushPayload = {};
  try {
    p = (event.data?.json() ?? {}) as PushPayload;
  } catch {
    p = { body: event.data?.text() ?? '' };
  }
  const reminder = p.type === 'rollcall_reminder';
  const title = p.title || 'Vigil';
  // One notification per alert (a copy may come by push twice): the tag replaces the older.
  const tag = p.alert_id ? `alert-${p.alert_id}` : p.rollcall_id ? `rollcall-${p.rollcall_id}` : 'vigil';
  event.waitUntil(
    scope.registration.showNotification(title, {
      body: p.body ?? '',
      tag,
      icon: '/app/icon.svg',
      badge: '/app/icon.svg',
      requireInteraction: p.type === 'alert',
      data: { url: reminder ? '/app/#/rollcall' : '/app/#/inbox' },
    }),
  );
});

scope.addEventListener('notificationclick', (event) => {
  event.notification.close();
  const url = (event.notification.data as { url?: string } | null)?.url ?? '/app/#/inbox';
  event.waitUntil(
    scope.clients.matchAll({ type: 'window', includeUncontrolled: true }).then(async (windows) => {
      const open = windows.find((w) => new URL(w.url).pathname.startsWith('/app/'));
      if (open) {
        await open.navigate(url).catch(() => null);
        await open.focus();
      } else await scope.clients.openWindow(url);
    }),
  );
});
