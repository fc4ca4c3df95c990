// The staff web app (installable PWA under /app/): sign-in; tracking or location-less mode;
// sending positions from the browser in tracking mode; followed areas; the inbox of messages
// that arrive over the WebSocket; who saw my position.
//
// Two tables are the places later features plug into: APP_SCREENS (the tab bar: alerts,
// roll-calls and SOS join it) and MESSAGE_RENDERERS (one renderer per message kind).

import '../style.css';
import { api, logout, onSignedOut, resume, type AreaProps, type Me } from '../api';
import { applyToDocument, formatTime, kindLabel, levelLabel, onLanguageChange, t, type Key } from '../i18n';
import { announce, button, errorText, fill, h, languagePicker, reportError, signIn, table } from '../ui';
import { LiveSocket, SessionMessageStore, type InboxMessage, type SocketState } from '../ws';
import type { Feature, Geometry } from 'geojson';

interface AppContext {
  me: Me;
  socket: LiveSocket;
  inbox: SessionMessageStore;
  tracker: Tracker;
}

/** A tab of the app. */
interface AppScreen {
  id: string;
  label: Key;
  render(ctx: AppContext, container: HTMLElement): void | Promise<void>;
  /** A count shown on the tab (unread messages). */
  badge?(ctx: AppContext): number;
}

/** How each kind of message looks in the inbox. Alerts, roll-calls and chat add theirs here. */
export const MESSAGE_RENDERERS: Record<string, (m: InboxMessage) => HTMLElement> = {
  area_entered: (m) => areaMessage(m, 'msg.area_entered'),
  area_left: (m) => areaMessage(m, 'msg.area_left'),
};

function areaMessage(m: InboxMessage, key: Key): HTMLElement {
  const p = m.payload as { name?: string; security_level?: number | null; advisory?: string | null };
  return h('article', { class: `message kind-${m.kind}`, 'data-seq': m.seq },
    h('h3', {}, t(key, { name: p.name ?? '?' })),
    h('p', { class: 'meta' }, formatTime(m.at), p.security_level ? ` · ${t('msg.level', { level: levelLabel(p.security_level) })}` : ''),
    p.advisory ? h('p', { class: 'advisory' }, p.advisory) : null);
}

function renderMessage(m: InboxMessage): HTMLElement {
  const render = MESSAGE_RENDERERS[m.kind];
  if (render) return render(m);
  return h('article', { class: 'message', 'data-seq': m.seq }, h('h3', {}, t('msg.unknown', { kind: m.kind })), h('p', { class: 'meta' }, formatTime(m.at)));
}

/** Sends the browser's positions while tracking is on: the first fix at once, then at most every 30 s. */
class Tracker {
  private watch: number | null = null;
  private lastSent = 0;
  private view: HTMLElement | null = null;
  status = '';

  constructor(private readonly socket: LiveSocket) {}

  get running(): boolean {
    return this.watch !== null;
  }

  /** Where the status is shown (the home screen's line, replaced at each render). */
  showIn(view: HTMLElement): void {
    this.view = view;
    view.textContent = this.status;
  }

  private say(text: string): void {
    this.status = text;
    if (this.view) this.view.textContent = text;
  }

  start(): void {
    if (this.running) return;
    if (!('geolocation' in navigator)) return this.say(t('track.unavailable'));
    this.say(t('track.waiting'));
    this.lastSent = 0;
    this.watch = navigator.geolocation.watchPosition(
      (pos) => void this.send(pos),
      (err) => this.say(t('track.denied', { detail: err.message })),
      { enableHighAccuracy: true, maximumAge: 10_000, timeout: 60_000 },
    );
  }

  stop(): void {
    if (this.watch !== null) navigator.geolocation.clearWatch(this.watch);
    this.watch = null;
    this.say('');
  }

  private async send(pos: GeolocationPosition): Promise<void> {
    if (Date.now() - this.lastSent < 30_000) return;
    this.lastSent = Date.now();
    const fix = {
      lat: pos.coords.latitude,
      lon: pos.coords.longitude,
      accuracy_m: Number.isFinite(pos.coords.accuracy) ? pos.coords.accuracy : null,
      recorded_at: new Date(pos.timestamp).toISOString(),
    };
    try {
      // Over the socket when it is up (acknowledged once stored), else over HTTP.
      if (this.socket.online) await this.socket.sendPositions([fix]);
      else await api.sendFixes([fix]);
      this.say(t('track.sent', { t: formatTime(fix.recorded_at) }));
    } catch (e) {
      this.lastSent = 0;
      this.say(t('error.generic', { detail: errorText(e) }));
    }
  }
}

const homeScreen: AppScreen = {
  id: 'home',
  label: 'nav.home',
  async render(ctx, container) {
    const { mode } = await api.locationMode();
    ctx.me.location_mode = mode;
    const radios = (['tracking', 'location_less'] as const).map((m) => {
      const input = h('input', { type: 'radio', name: 'mode', value: m, checked: mode === m, 'data-testid': `mode-${m}` });
      input.addEventListener('change', async () => {
        try {
          await api.setLocationMode(m);
          ctx.me.location_mode = m;
          if (m === 'location_less') ctx.tracker.stop();
          announce(t('mode.changed'));
          await homeScreen.render(ctx, container);
        } catch (e) {
          reportError(e);
        }
      });
      return h('label', { class: 'choice' }, input, h('span', {}, t(m === 'tracking' ? 'mode.tracking' : 'mode.location_less')));
    });
    const status = h('p', { class: 'track-status', role: 'status', 'data-testid': 'track-status' });
    ctx.tracker.showIn(status);
    const trackButton = mode === 'tracking'
      ? button(ctx.tracker.running ? t('track.stop') : t('track.start'), () => {
        if (ctx.tracker.running) ctx.tracker.stop();
        else ctx.tracker.start();
        trackButton!.textContent = ctx.tracker.running ? t('track.stop') : t('track.start');
      }, { class: 'primary big', 'data-testid': 'track-toggle' })
      : null;
    fill(container,
      h('h1', {}, t('signed_in_as', { name: ctx.me.name })),
      h('fieldset', { class: 'modes' }, h('legend', {}, t('mode.title')), ...radios),
      trackButton,
      status,
    );
  },
};

const areasScreen: AppScreen = {
  id: 'areas',
  label: 'nav.areas',
  async render(_ctx, container) {
    container.replaceChildren(h('p', {}, t('loading')));
    const [fc, followed] = await Promise.all([api.areas(), api.followed()]);
    const chosen = new Set(followed.area_ids);
    let filter = '';
    const list = h('ul', { class: 'check-list', 'data-testid': 'follow-list' });
    const count = h('p', { class: 'count', 'aria-live': 'polite' });
    const features = (fc.features as Array<Feature<Geometry, AreaProps> & { id: number }>)
      .sort((a, b) => Number(chosen.has(b.id)) - Number(chosen.has(a.id)) || a.properties.name.localeCompare(b.properties.name));
    const draw = () => {
      const shown = features.filter((f) => chosen.has(f.id) || !filter || f.properties.name.toLowerCase().includes(filter)).slice(0, 300);
      list.replaceChildren(...shown.map((f) => {
        const box = h('input', { type: 'checkbox', checked: chosen.has(f.id), 'data-area-id': f.id });
        box.addEventListener('change', () => {
          if (box.checked) chosen.add(f.id);
          else chosen.delete(f.id);
          count.textContent = t('follow.count', { n: chosen.size });
        });
        return h('li', {}, h('label', {}, box, h('span', {}, f.properties.name, h('small', {}, `${kindLabel(f.properties.kind)} · ${levelLabel(f.properties.security_level)}`))));
      }));
      count.textContent = t('follow.count', { n: chosen.size });
    };
    const search = h('input', { type: 'search', 'aria-label': t('panel.filter'), placeholder: t('panel.filter') });
    search.addEventListener('input', () => {
      filter = search.value.trim().toLowerCase();
      draw();
    });
    const save = button(t('follow.save'), async () => {
      try {
        await api.setFollowed([...chosen]);
        announce(t('follow.saved'));
      } catch (e) {
        reportError(e);
      }
    }, { class: 'primary', 'data-testid': 'follow-save' });
    container.replaceChildren(
      h('h1', {}, t('follow.title')),
      h('p', {}, t('follow.explain')),
      search,
      count,
      list,
      h('div', { class: 'sticky-actions' }, save));
    draw();
  },
};

const inboxScreen: AppScreen = {
  id: 'inbox',
  label: 'nav.inbox',
  badge: (ctx) => ctx.inbox.all().filter((m) => m.seq > ctx.inbox.seenSeq).length,
  render(ctx, container) {
    const messages = [...ctx.inbox.all()].reverse();
    ctx.inbox.markSeen();
    container.replaceChildren(
      h('h1', {}, t('inbox.title')),
      h('div', { class: 'inbox', 'data-testid': 'inbox' }, ...(messages.length ? messages.map(renderMessage) : [h('p', {}, t('inbox.empty'))])));
  },
};

const privacyScreen: AppScreen = {
  id: 'privacy',
  label: 'nav.privacy',
  async render(_ctx, container) {
    const entries = await api.accessLog();
    container.replaceChildren(
      h('h1', {}, t('access.title')),
      h('p', {}, t('access.explain')),
      entries.length
        ? table(t('access.title'), [t('access.when'), t('access.viewer'), t('access.purpose')], entries.map((e) => [formatTime(e.at), e.viewer_name, e.purpose]))
        : h('p', {}, t('access.empty')));
  },
};

/** The app's tabs, in order. Alerts, roll-calls and SOS come here when the server has them. */
const APP_SCREENS: AppScreen[] = [homeScreen, areasScreen, inboxScreen, privacyScreen];

const root = document.getElementById('root')!;

async function boot(): Promise<void> {
  applyToDocument();
  if ('serviceWorker' in navigator) {
    navigator.serviceWorker.register('/app/sw.js', { scope: '/app/' }).catch((e: unknown) => console.warn('service worker', e));
  }
  onSignedOut(() => location.assign('/app/'));
  if (!(await resume())) await signIn(root, 'app.name');
  let me: Me;
  try {
    me = await api.me();
  } catch (e) {
    reportError(e);
    return;
  }
  const inbox = new SessionMessageStore(me.id);
  const socket = new LiveSocket(inbox);
  const ctx: AppContext = { me, socket, inbox, tracker: new Tracker(socket) };
  shell(ctx);
  socket.start();
}

function shell(ctx: AppContext): void {
  const main = h('main', { class: 'app-main', id: 'main', tabindex: '-1' });
  const status = h('span', { class: 'conn', 'data-state': 'connecting', role: 'status' });
  let socketState: SocketState = 'connecting';
  const nav = h('nav', { class: 'tabbar', 'aria-label': t('nav.label') });
  const header = h('header', { class: 'app-top' });
  const currentId = () => {
    const id = location.hash.replace(/^#\/?/, '');
    return APP_SCREENS.some((s) => s.id === id) ? id : APP_SCREENS[0]!.id;
  };
  // Built once per language; afterwards only updated in place, so focus is never lost.
  const drawChrome = () => {
    status.textContent = t(`conn.${socketState}` as Key);
    header.replaceChildren(h('span', { class: 'brand' }, t('app.name')), status, languagePicker(), button(t('logout'), () => void logout()));
    nav.setAttribute('aria-label', t('nav.label'));
    nav.replaceChildren(h('ul', {}, ...APP_SCREENS.map((s) =>
      h('li', {}, h('a', { href: `#/${s.id}`, 'data-screen': s.id }, t(s.label), h('span', { class: 'badge', hidden: true }))))));
    updateNav();
  };
  const updateNav = () => {
    for (const s of APP_SCREENS) {
      const link = nav.querySelector<HTMLAnchorElement>(`a[data-screen="${s.id}"]`);
      if (!link) continue;
      if (s.id === currentId()) link.setAttribute('aria-current', 'page');
      else link.removeAttribute('aria-current');
      const badge = link.querySelector<HTMLElement>('.badge')!;
      const n = s.badge?.(ctx) ?? 0;
      badge.hidden = n === 0;
      badge.textContent = String(n);
      badge.setAttribute('aria-label', `(${n})`);
    }
  };
  const show = async () => {
    updateNav();
    const screen = APP_SCREENS.find((s) => s.id === currentId())!;
    try {
      await screen.render(ctx, main);
    } catch (e) {
      reportError(e);
    }
    // Again: the screen may have changed a badge (the inbox marks its messages seen).
    updateNav();
  };
  ctx.socket.onState((s) => {
    socketState = s;
    status.dataset.state = s;
    status.textContent = t(`conn.${s}` as Key);
  });
  ctx.inbox.onAdd(() => {
    if (currentId() === 'inbox') void show();
    else updateNav();
  });
  root.replaceChildren(header, main, nav);
  window.addEventListener('hashchange', () => void show());
  onLanguageChange(() => {
    drawChrome();
    void show();
  });
  drawChrome();
  void show();
}

void boot();
