// The operations console: sign-in, then a shell with one entry per screen the person's roles
// allow. Screens are listed in SCREENS.

import '../style.css';
import { api, logout, onSignedOut, resume, webConfig, type Me, type Organisation, type WebConfig } from '../api';
import { applyToDocument, onLanguageChange, t, type Key } from '../i18n';
import { button, h, languagePicker, reportError, signIn } from '../ui';
import { LiveSocket, SeqOnlyStore, type SocketState } from '../ws';
import { accessScreen } from './access';
import { alertsScreen } from './alerts';
import { composeScreen } from './compose';
import { mapScreen } from './map-screen';
import { peopleScreen } from './people';
import { rollcallsScreen } from './rollcalls';
import { sosScreen, watchSos } from './sos';

/** What every console screen is given. */
export interface ConsoleContext {
  me: Me;
  config: WebConfig;
  socket: LiveSocket;
  /** The person's stored messages as they arrive (SOS cases, chat). */
  messages: SeqOnlyStore;
  organisations: Organisation[];
  /** Whether the person watches every organisation (oversight, system admin). */
  seesAll: boolean;
}

/** A screen of the console: its nav entry, who may open it, and how it is built. */
export interface Screen {
  id: string;
  label: Key;
  allowed(me: Me): boolean;
  /**
   * Builds the screen once into `container` (already in the page and visible, so a map can
   * measure it); the screen is kept, hidden, when the person moves to another.
   */
  create(ctx: ConsoleContext, container: HTMLElement): Promise<ScreenInstance>;
}

export interface ScreenInstance {
  /** Called each time the screen is shown (refresh lists). */
  shown?(): void;
  /** Releases what the screen holds (socket listeners, the map's WebGL context). */
  dispose?(): void;
}

const OPERATIONS_ROLES = ['operator', 'adviser', 'org_admin', 'oversight'];

export function isOperations(me: Me): boolean {
  return me.system_admin || me.roles.some((r) => OPERATIONS_ROLES.includes(r));
}

/** The console's screens, in nav order. */
export const SCREENS: Screen[] = [mapScreen, composeScreen, alertsScreen, rollcallsScreen, sosScreen, peopleScreen, accessScreen];

const root = document.getElementById('root')!;

async function boot(): Promise<void> {
  applyToDocument();
  onSignedOut(() => location.assign('/'));
  if (!(await resume())) await signIn(root, 'console.title');
  let me: Me;
  try {
    me = await api.me();
  } catch (e) {
    reportError(e);
    await logout();
    return;
  }
  if (!isOperations(me)) {
    // Staff use the staff app; the console has nothing for them.
    location.assign('/app/');
    return;
  }
  const [config, organisations] = await Promise.all([webConfig(), api.organisations().catch(() => [])]);
  const messages = new SeqOnlyStore();
  const socket = new LiveSocket(messages);
  const ctx: ConsoleContext = { me, config, socket, messages, organisations, seesAll: me.system_admin || me.roles.includes('oversight') };
  shell(ctx);
  socket.start();
}

function shell(ctx: ConsoleContext): void {
  const screens = SCREENS.filter((s) => s.allowed(ctx.me));
  const built = new Map<string, { container: HTMLElement; inst: ScreenInstance | null }>();
  const main = h('main', { id: 'main', class: 'console-main', tabindex: '-1' });
  const status = h('span', { class: 'conn', 'data-state': 'connecting', role: 'status' }, t('conn.connecting'));
  let socketState: SocketState = 'connecting';
  ctx.socket.onState((s) => {
    socketState = s;
    status.dataset.state = s;
    status.textContent = t(`conn.${s}` as Key);
  });

  const nav = h('nav', { 'aria-label': t('nav.label') });
  const header = h('header', { class: 'topbar' });
  let unclaimedSos = 0;
  const paintSos = () => {
    const badge = nav.querySelector<HTMLElement>('a[data-screen=sos] .badge');
    if (!badge) return;
    badge.hidden = unclaimedSos === 0;
    badge.textContent = String(unclaimedSos);
    badge.setAttribute('aria-label', t('sos.unclaimed_count', { n: unclaimedSos }));
  };
  if (screens.some((s) => s.id === 'sos')) {
    watchSos(ctx, (n) => {
      unclaimedSos = n;
      paintSos();
    });
  }
  const renderHeader = () => {
    const links = screens.map((s) => h('a', { href: `#/${s.id}`, 'data-screen': s.id }, t(s.label), s.id === 'sos' ? h('span', { class: 'badge', hidden: true, 'data-testid': 'sos-badge' }) : null));
    nav.setAttribute('aria-label', t('nav.label'));
    nav.replaceChildren(h('ul', {}, ...links.map((a) => h('li', {}, a))));
    status.textContent = t(`conn.${socketState}` as Key);
    header.replaceChildren(
      h('a', { class: 'skip', href: '#main', onclick: ((e: Event) => { e.preventDefault(); main.focus(); }) as EventListener }, t('skip')),
      h('span', { class: 'brand' }, t('app.name'), h('small', {}, t('console.title'))),
      nav,
      status,
      h('span', { class: 'who' }, t('signed_in_as', { name: ctx.me.name })),
      languagePicker(),
      button(t('logout'), () => void logout()),
    );
    markCurrent();
    paintSos();
  };
  const markCurrent = () => {
    const current = currentId();
    nav.querySelectorAll('a').forEach((a) => (a.dataset.screen === current ? a.setAttribute('aria-current', 'page') : a.removeAttribute('aria-current')));
  };
  const currentId = () => {
    const id = location.hash.replace(/^#\/?/, '');
    return screens.some((s) => s.id === id) ? id : screens[0]!.id;
  };
  const show = async () => {
    const id = currentId();
    markCurrent();
    for (const [sid, b] of built) b.container.hidden = sid !== id;
    const existing = built.get(id);
    if (existing) {
      existing.inst?.shown?.();
      return;
    }
    const screen = screens.find((s) => s.id === id)!;
    const entry = { container: h('section', { class: `screen screen-${id}`, 'data-screen': id, 'aria-label': t(screen.label) }), inst: null as ScreenInstance | null };
    built.set(id, entry);
    main.append(entry.container);
    try {
      entry.inst = await screen.create(ctx, entry.container);
      entry.inst.shown?.();
    } catch (e) {
      reportError(e);
    }
  };
  root.replaceChildren(header, main);
  renderHeader();
  window.addEventListener('hashchange', () => void show());
  onLanguageChange(() => {
    // Screens hold state (the map, drawings): rebuild them only when they say they can't adapt.
    renderHeader();
    for (const b of built.values()) {
      b.inst?.dispose?.();
      b.container.remove();
    }
    built.clear();
    void show();
  });
  void show();
}

void boot();
