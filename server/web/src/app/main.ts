// The staff web app (installable PWA under /app/): sign-in; tracking or location-less mode;
// sending positions from the browser in tracking mode; followed areas; the inbox of alerts
// (kept in IndexedDB, readable offline, acknowledged from here) and other messages that arrive
// over the WebSocket; answering roll-calls; SOS with the operators' chat; web push; who saw my
// position.
//
// Two tables are the places features plug into: APP_SCREENS (the tab bar) and
// MESSAGE_RENDERERS (one renderer per message kind shown in the inbox).

import '../style.css';
import { api, hasSession, logout, onSignedOut, refresh, resume, type AreaProps, type Me } from '../api';
import { applyToDocument, formatTime, kindLabel, levelLabel, onLanguageChange, t, type Key } from '../i18n';
import { announce, button, errorText, fill, h, languagePicker, reportError, signIn, table } from '../ui';
import { LiveSocket, SessionMessageStore, type InboxMessage, type SocketState } from '../ws';
import type { Feature, Geometry } from 'geojson';
import { AlertStore } from './alert-store';
import { ALERT_KINDS, alertCard, enablePush, markShownRead, onAlertMessage, pushStatus, syncAlerts, type PushStatus } from './alerts';
import type { AppContext, AppScreen, PositionSender } from './context';
import { ROLLCALL_KINDS, countUnanswered, rollcallScreen } from './rollcall';
import { sosScreen, sosUpdated } from './sos';

/** How each kind of message looks in the inbox. */
export const MESSAGE_RENDERERS: Record<string, (m: InboxMessage) => HTMLElement> = {
  area_entered: (m) => areaMessage(m, 'msg.area_entered'),
  area_left: (m) => areaMessage(m, 'msg.area_left'),
  rollcall: (m) => rollcallMessage(m, 'msg.rollcall'),
  rollcall_reminder: (m) => rollcallMessage(m, 'msg.rollcall_reminder'),
  rollcall_closed: (m) => rollcallMessage(m, 'msg.rollcall_closed'),
  sos_update: (m) => {
    const p = m.payload as { event?: string };
    return h('article', { class: 'message kind-sos_update', 'data-seq': m.seq },
      h('h3', {}, t(`sos.event.${p.event ?? 'note'}` as Key)), h('p', { class: 'meta' }, formatTime(m.at)),
      h('a', { href: '#/sos' }, t('msg.open_sos')));
  },
};

/** Kinds kept elsewhere (alerts in IndexedDB, chat in its conversation, operators' copies). */
const NOT_IN_INBOX = new Set([...ALERT_KINDS, 'chat', 'chat_added', 'chat_removed', 'chat_closed', 'sos']);

function rollcallMessage(m: InboxMessage, key: Key): HTMLElement {
  const p = m.payload as { title?: string; message?: string };
  return h('article', { class: `message kind-${m.kind}`, 'data-seq': m.seq },
    h('h3', {}, t(key, { title: p.title ?? '' })),
    p.message ? h('p', { dir: 'auto' }, p.message) : null,
    h('p', { class: 'meta' }, formatTime(m.at)),
    m.kind === 'rollcall_closed' ? null : h('a', { href: '#/rollcall' }, t('msg.answer_rollcall')));
}

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
class Tracker implements PositionSender {
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
    if (ctx.offline) {
      container.replaceChildren(h('h1', {}, t('signed_in_as', { name: ctx.me.name })), h('p', { role: 'status' }, t('app.offline')), h('a', { href: '#/inbox' }, t('nav.inbox')));
      return;
    }
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
      pushSection(),
      h('p', {}, h('a', { href: '#/privacy' }, t('access.title'))),
    );
  },
};

/** Alert notifications on this device (web push through the service worker). */
function pushSection(): HTMLElement {
  const line = h('p', { role: 'status', 'data-testid': 'push-status' });
  const toggle = button(t('push.enable'), async () => {
    toggle.disabled = true;
    show(await enablePush(true));
  }, { 'data-testid': 'push-enable' });
  const show = (s: PushStatus) => {
    line.textContent = t(`push.${s}` as Key);
    toggle.hidden = s === 'on' || s === 'unsupported' || s === 'denied';
    toggle.disabled = false;
  };
  void pushStatus().then(show);
  return h('section', { class: 'card push', 'aria-labelledby': 'push-title' }, h('h2', { id: 'push-title' }, t('push.title')), line, toggle);
}

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
  badge: (ctx) => ctx.inbox.all().filter((m) => m.seq > ctx.inbox.seenSeq && !NOT_IN_INBOX.has(m.kind)).length + ctx.alerts.all().filter((a) => a.state === 'delivered' || a.state === 'sent').length,
  render(ctx, container) {
    // Alerts and other messages, newest first.
    const items: Array<{ at: number; el: HTMLElement }> = [
      ...ctx.alerts.all().map((a) => ({ at: Date.parse(a.alert.sent_at), el: alertCard(ctx, a, () => void inboxScreen.render(ctx, container)) })),
      ...ctx.inbox.all().filter((m) => !NOT_IN_INBOX.has(m.kind)).map((m) => ({ at: Date.parse(m.at), el: renderMessage(m) })),
    ].sort((a, b) => b.at - a.at);
    ctx.inbox.markSeen();
    if (!ctx.offline) markShownRead(ctx);
    fill(container,
      h('h1', {}, t('inbox.title')),
      ctx.offline || !navigator.onLine ? h('p', { class: 'offline-note', role: 'status', 'data-testid': 'inbox-offline' }, t('inbox.offline')) : null,
      h('div', { class: 'inbox', 'data-testid': 'inbox' }, ...(items.length ? items.map((i) => i.el) : [h('p', {}, t('inbox.empty'))])));
  },
};

const privacyScreen: AppScreen = {
  id: 'privacy',
  label: 'nav.privacy',
  tab: false,
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

/** The app's tabs, in order (and the screens reached from them). */
const APP_SCREENS: AppScreen[] = [homeScreen, inboxScreen, rollcallScreen, sosScreen, areasScreen, privacyScreen];
const TABS = APP_SCREENS.filter((s) => s.tab !== false);
const ME_KEY = 'vigil.me';

const root = document.getElementById('root')!;

async function boot(): Promise<void> {
  applyToDocument();
  if ('serviceWorker' in navigator) {
    navigator.serviceWorker.register('/app/sw.js', { scope: '/app/' }).catch((e: unknown) => console.warn('service worker', e));
  }
  onSignedOut(() => {
    sessionStorage.removeItem(ME_KEY);
    location.assign('/app/');
  });
  let offline = false;
  if (!(await resume())) {
    // A session the server could not be asked about (no network): open what is stored.
    offline = hasSession() && sessionStorage.getItem(ME_KEY) !== null;
    if (!offline) await signIn(root, 'app.name');
  }
  let me: Me;
  try {
    me = offline ? (JSON.parse(sessionStorage.getItem(ME_KEY)!) as Me) : await api.me();
  } catch (e) {
    reportError(e);
    return;
  }
  sessionStorage.setItem(ME_KEY, JSON.stringify(me));
  const inbox = new SessionMessageStore(me.id);
  const socket = new LiveSocket(inbox);
  const alerts = await AlertStore.open(me.id);
  const ctx: AppContext = { me, socket, inbox, alerts, tracker: new Tracker(socket), offline };
  inbox.onAdd((m) => {
    if (ALERT_KINDS.has(m.kind)) void onAlertMessage(ctx, m);
  });
  shell(ctx);
  const online = () => {
    ctx.offline = false;
    socket.start();
    void syncAlerts(ctx).catch(() => undefined);
    // Notifications: re-registered at each start once allowed (the browser may have rotated it).
    void enablePush(false);
  };
  if (offline) {
    // Back online: the browser may say so ('online'), or may not (a network that came back
    // unannounced): ask the server now and then as well, with growing pauses.
    let timer: number | undefined;
    let pause = 3_000;
    const retry = async () => {
      window.clearTimeout(timer);
      if (!ctx.offline) return;
      if (await refresh()) {
        window.removeEventListener('online', retryNow);
        online();
        return;
      }
      pause = Math.min(pause * 2, 60_000);
      timer = window.setTimeout(() => void retry(), pause);
    };
    const retryNow = () => void retry();
    window.addEventListener('online', retryNow);
    timer = window.setTimeout(retryNow, pause);
  } else online();
}

function shell(ctx: AppContext): void {
  const main = h('main', { class: 'app-main', id: 'main', tabindex: '-1' });
  const status = h('span', { class: 'conn', 'data-state': 'connecting', role: 'status' });
  let socketState: SocketState = ctx.offline ? 'offline' : 'connecting';
  status.dataset.state = socketState;
  const nav = h('nav', { class: 'tabbar', 'aria-label': t('nav.label') });
  const header = h('header', { class: 'app-top' });
  const currentId = () => {
    const id = location.hash.replace(/^#\/?/, '');
    return APP_SCREENS.some((s) => s.id === id) ? id : (ctx.offline ? 'inbox' : APP_SCREENS[0]!.id);
  };
  // Built once per language; afterwards only updated in place, so focus is never lost.
  const drawChrome = () => {
    status.textContent = t(`conn.${socketState}` as Key);
    header.replaceChildren(h('span', { class: 'brand' }, t('app.name')), status, languagePicker(), button(t('logout'), () => void logout()));
    nav.setAttribute('aria-label', t('nav.label'));
    nav.replaceChildren(h('ul', {}, ...TABS.map((s) =>
      h('li', {}, h('a', { href: `#/${s.id}`, 'data-screen': s.id }, t(s.label), h('span', { class: 'badge', hidden: true }))))));
    updateNav();
  };
  const updateNav = () => {
    for (const s of TABS) {
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
  ctx.inbox.onAdd((m) => {
    if (currentId() === 'inbox' && !NOT_IN_INBOX.has(m.kind)) void show();
    else if (currentId() === 'rollcall' && ROLLCALL_KINDS.has(m.kind)) void show();
    else if (ROLLCALL_KINDS.has(m.kind)) void countUnanswered(ctx).then(updateNav, () => undefined);
    else if (m.kind === 'sos_update') sosUpdated(m);
    else updateNav();
  });
  ctx.alerts.onChange(() => {
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
