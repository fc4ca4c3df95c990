// The staff app's service worker (scope /app/): keeps the app's own files so that it opens
// without a network, and never caches the API. Self-contained (no imports): it is built as one
// classic script. The build fills in PRECACHE and VERSION (vite.config.ts).
//
// Later: `push` and `notificationclick` handlers for web push, and stored alerts in IndexedDB.

interface ExtendableEvent extends Event {
  waitUntil(promise: Promise<unknown>): void;
}
interface FetchEvent extends ExtendableEvent {
  readonly request: Request;
  respondWith(response: Promise<Response> | Response): void;
}
interface WorkerScope {
  skipWaiting(): Promise<void>;
  clients: { claim(): Promise<void> };
  addEventListener(type: 'install' | 'activate', listener: (e: ExtendableEvent) => void): void;
  addEventListener(type: 'fetch', listener: (e: FetchEvent) => void): void;
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
