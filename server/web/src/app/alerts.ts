// Alerts on the phone: kept in IndexedDB as they arrive (socket, or `GET /me/alerts` at start),
// reported delivered / read / acknowledged, shown in the inbox in the person's language, and
// web push so that a sleeping phone still shows the alert's title.

import { ops } from '../api';
import { formatTime, language, t, type Key } from '../i18n';
import { announce, button, h, reportError } from '../ui';
import type { InboxMessage } from '../ws';
import { reached, type AlertPayload, type AlertState, type StoredAlert } from './alert-store';
import type { AppContext } from './context';

/** Stored message kinds the alert store takes care of (not listed as plain messages). */
export const ALERT_KINDS = new Set(['alert', 'alert_cancelled']);

/** Reports a step of this device's copy: over the socket when it is up, else over HTTP. */
async function report(ctx: AppContext, id: number, state: 'delivered' | 'read' | 'acknowledged'): Promise<void> {
  if (state !== 'acknowledged' && ctx.socket.alertReceipt(id, state)) return;
  await ops.receipt(id, state);
}

/** Handles a stored message about an alert (from the socket). */
export async function onAlertMessage(ctx: AppContext, m: InboxMessage): Promise<void> {
  if (m.kind === 'alert') {
    const alert = m.payload as unknown as AlertPayload;
    await ctx.alerts.put(alert, 'delivered');
    await report(ctx, alert.alert_id, 'delivered').catch(() => undefined);
  } else if (m.kind === 'alert_cancelled') {
    await ctx.alerts.cancel(Number(m.payload.alert_id), String(m.payload.cancelled_at ?? m.at));
  }
}

/** Fetches the person's alerts (what arrived while signed out, or by push only). */
export async function syncAlerts(ctx: AppContext): Promise<void> {
  const items = await ops.myAlerts();
  for (const item of items) await ctx.alerts.put(item.alert as unknown as AlertPayload, item.state as AlertState);
}

/** The inbox shows these: reports them read (once). */
export function markShownRead(ctx: AppContext): void {
  for (const a of ctx.alerts.all()) {
    if (reached(a.state, 'read')) continue;
    void ctx.alerts.setState(a.alert_id, 'read');
    void report(ctx, a.alert_id, 'read').catch(() => undefined);
  }
}

function textOf(a: AlertPayload): { lang: string; title: string; body: string; instructions?: string } {
  const lang = a.translations[language()] ? language() : a.translations[a.default_language] ? a.default_language : Object.keys(a.translations)[0] ?? 'en';
  const tr = a.translations[lang] ?? { title: '', body: '' };
  return { lang, ...tr };
}

/** One alert in the inbox, with its Acknowledge button. */
export function alertCard(ctx: AppContext, stored: StoredAlert, rerender: () => void): HTMLElement {
  const a = stored.alert;
  const text = textOf(a);
  const cancelled = !!a.cancelled_at;
  const expired = Date.parse(a.expires_at) < Date.now();
  const acked = reached(stored.state, 'acknowledged');
  const ack = !acked && !cancelled
    ? button(t('alert.acknowledge'), async () => {
      ack!.disabled = true;
      try {
        await report(ctx, a.alert_id, 'acknowledged');
        await ctx.alerts.setState(a.alert_id, 'acknowledged');
        announce(t('alert.acknowledged_done'));
        rerender();
      } catch (e) {
        ack!.disabled = false;
        reportError(e);
      }
    }, { class: 'primary big', 'data-testid': 'alert-ack' })
    : null;
  return h('article', { class: `message alert-card sev-${a.severity}${cancelled ? ' cancelled' : ''}`, 'data-alert-id': a.alert_id, 'data-state': stored.state },
    h('p', { class: 'sev-label' }, t(`cap.severity.${a.severity}` as Key), a.security_level ? ` · ${t('msg.level', { level: a.security_level })}` : ''),
    h('h3', { lang: text.lang, dir: 'auto' }, text.title),
    h('p', { lang: text.lang, dir: 'auto' }, text.body),
    text.instructions ? h('p', { class: 'advisory', lang: text.lang, dir: 'auto' }, text.instructions) : null,
    h('p', { class: 'meta' }, formatTime(a.sent_at), ' · ', t(expired ? 'alert.expired' : 'alert.until', { t: formatTime(a.expires_at) })),
    cancelled ? h('p', { class: 'advisory' }, t('alert.cancelled', { t: formatTime(a.cancelled_at!) })) : null,
    acked ? h('p', { class: 'done', 'data-testid': 'alert-acked' }, t('alert.acknowledged')) : ack);
}

// ---------- web push ----------

function keyBytes(base64url: string): Uint8Array<ArrayBuffer> {
  const b64 = (base64url + '='.repeat((4 - (base64url.length % 4)) % 4)).replace(/-/g, '+').replace(/_/g, '/');
  const raw = atob(b64);
  const out = new Uint8Array(new ArrayBuffer(raw.length));
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
}

export type PushStatus = 'unsupported' | 'denied' | 'off' | 'on' | 'failed';

/** Where web push stands on this device. */
export async function pushStatus(): Promise<PushStatus> {
  if (!('serviceWorker' in navigator) || !('PushManager' in window) || !('Notification' in window)) return 'unsupported';
  if (Notification.permission === 'denied') return 'denied';
  if (Notification.permission !== 'granted') return 'off';
  const reg = await navigator.serviceWorker.getRegistration('/app/');
  return (await reg?.pushManager.getSubscription()) ? 'on' : 'off';
}

/**
 * Subscribes this browser with the server's VAPID key and registers the subscription for the
 * signed-in person. `ask`: may ask for the notification permission (only from a click).
 */
export async function enablePush(ask: boolean): Promise<PushStatus> {
  if ((await pushStatus()) === 'unsupported') return 'unsupported';
  if (Notification.permission !== 'granted') {
    if (!ask) return 'off';
    if ((await Notification.requestPermission()) !== 'granted') return Notification.permission === 'denied' ? 'denied' : 'off';
  }
  try {
    const reg = await navigator.serviceWorker.ready;
    let sub = await reg.pushManager.getSubscription();
    if (!sub) {
      const { public_key } = await ops.vapidKey();
      sub = await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: keyBytes(public_key) });
    }
    await ops.registerPush(sub.toJSON());
    return 'on';
  } catch (e) {
    // A browser without a reachable push service (no network, or none built in) ends here.
    console.warn('web push', e);
    return 'failed';
  }
}
