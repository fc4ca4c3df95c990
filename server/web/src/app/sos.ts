// SOS on the phone: one button; in location-less mode the person chooses whether to share
// their position this once (kept on the case only). Then the case's chat with the operators.

import { ApiError, ops, type SosCase } from '../api';
import { ChatView } from '../chat';
import { formatTime, t, type Key } from '../i18n';
import { button, errorText, h, openDialog } from '../ui';
import type { InboxMessage } from '../ws';
import { currentFix, type AppContext, type AppScreen } from './context';

let chat: ChatView | null = null;
let statusLine: HTMLElement | null = null;

/** A change to the person's case (claimed, closed…): said on the SOS tab without redrawing it. */
export function sosUpdated(m: InboxMessage): void {
  const c = (m.payload as { case?: SosCase }).case;
  if (!c || !statusLine?.isConnected) return;
  statusLine.textContent = c.status === 'closed'
    ? t('sos.app_status.closed', { outcome: c.outcome ?? '' })
    : t(`sos.app_status.${c.status === 'claimed' ? 'claimed' : 'open'}` as Key, { t: formatTime(c.opened_at) });
}

export const sosScreen: AppScreen = {
  id: 'sos',
  label: 'nav.sos',
  async render(ctx, container) {
    chat?.dispose();
    chat = null;
    const status = h('p', { class: 'track-status', role: 'status', 'data-testid': 'sos-status' });
    statusLine = status;
    const press = h('button', { type: 'button', class: 'sos-button', 'data-testid': 'sos-press' }, t('sos.button'));
    press.addEventListener('click', () => confirmPress(ctx, status, () => void sosScreen.render(ctx, container)));
    container.replaceChildren(h('h1', {}, t('sos.title_app')), h('p', {}, t('sos.explain')), press, status);
    let open: SosCase | undefined;
    try {
      open = (await ops.sosCases()).find((c) => c.status !== 'closed');
    } catch (e) {
      status.textContent = t('error.generic', { detail: errorText(e) });
      return;
    }
    if (!open) return;
    // A case is open: the chat matters more now than a big button (pressing again adds to it).
    press.classList.add('compact');
    status.textContent = t(`sos.app_status.${open.status === 'claimed' ? 'claimed' : 'open'}` as Key, { t: formatTime(open.opened_at) });
    status.dataset.caseId = String(open.id);
    if (open.conversation_id !== null) {
      const view = new ChatView(open.conversation_id, ctx.me.id, { socket: ctx.socket, onMessage: (l) => ctx.inbox.onAdd(l) }, t('sos.chat_title'));
      chat = view;
      container.append(view.element);
      await view.load().catch(() => undefined);
    }
  },
};

/** Asks before sending: an SOS alarms the operations room. Location-less: share this once? */
function confirmPress(ctx: AppContext, status: HTMLElement, done: () => void): void {
  const lessMode = ctx.me.location_mode === 'location_less';
  const send = (share: boolean) => async () => {
    dlg.close();
    status.textContent = t('sos.sending');
    // In tracking mode the phone's fresh fix goes with the press; location-less only if agreed.
    const position = !lessMode || share ? await currentFix(8_000) : null;
    try {
      await ops.pressSos({ ...(position ? { position } : {}), ...(lessMode && position ? { share_location: true } : {}) });
      status.textContent = t('sos.sent');
      done();
    } catch (e) {
      status.textContent = e instanceof ApiError && e.status === 0 ? t('sos.offline') : t('error.generic', { detail: errorText(e) });
    }
  };
  const actions = lessMode
    ? [
      button(t('sos.send_share'), send(true), { class: 'danger', 'data-testid': 'sos-send-share' }),
      button(t('sos.send_no_position'), send(false), { class: 'danger', 'data-testid': 'sos-send-no-position' }),
    ]
    : [button(t('sos.send'), send(false), { class: 'danger', 'data-testid': 'sos-send' })];
  actions.push(button(t('area.cancel'), () => dlg.close()));
  const dlg = openDialog(t('sos.confirm_title'), h('p', {}, lessMode ? t('sos.confirm_less') : t('sos.confirm')), actions);
}
