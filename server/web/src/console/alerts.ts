// The alert delivery board: every alert the person may see, and for one alert its ledger —
// queued, sent, delivered, read, acknowledged — moving live (the socket's `operations` topic),
// every recipient's copy, and cancelling.

import { LEDGER_STEPS, ops, type Alert, type RecipientRow } from '../api';
import { formatTime, language, reasonLabel, t, type Key } from '../i18n';
import { announce, button, fill, h, openDialog, reportError, table } from '../ui';
import type { LiveEvent } from '../ws';
import { followOperations, listAndDetail } from './layout';
import { isOperations, type ConsoleContext, type Screen } from './main';

let wanted: number | null = null;

/** Opens the delivery board on one alert (after sending it). */
export function showAlert(id: number): void {
  wanted = id;
  if (location.hash === '#/alerts') window.dispatchEvent(new HashChangeEvent('hashchange'));
  else location.hash = '#/alerts';
}

/** An alert's title in the console's language, or its default language. */
export function alertTitle(a: Pick<Alert, 'translations' | 'default_language'>): string {
  return (a.translations[language()] ?? a.translations[a.default_language] ?? Object.values(a.translations)[0])?.title ?? '';
}

export const alertsScreen: Screen = {
  id: 'alerts',
  label: 'nav.alerts',
  allowed: isOperations,
  async create(ctx, container) {
    const board = new DeliveryBoard(ctx, container);
    await board.load();
    return { shown: () => void board.load(), dispose: () => board.dispose() };
  },
};

class DeliveryBoard {
  private alerts: Alert[] = [];
  private selected: number | null = null;
  private recipients: RecipientRow[] = [];
  private stateFilter = '';
  private readonly list = h('ul', { class: 'list', 'data-testid': 'alert-list', 'aria-label': t('alerts.list') });
  // Not a live region: the counts move several times a second while an alert goes out.
  private readonly detail = h('section', { class: 'detail-pane', 'data-testid': 'alert-detail' });
  private readonly unlisten: Array<() => void> = [];
  private recipientsTimer: number | undefined;

  constructor(private readonly ctx: ConsoleContext, container: HTMLElement) {
    listAndDetail(container, t('alerts.title'), [this.list], this.detail);
    this.unlisten.push(...followOperations(ctx, (e) => this.onEvent(e), () => void this.load()));
  }

  dispose(): void {
    this.unlisten.forEach((u) => u());
  }

  async load(): Promise<void> {
    try {
      this.alerts = await ops.alerts();
      if (wanted !== null) {
        this.selected = wanted;
        wanted = null;
      }
      this.selected ??= this.alerts[0]?.id ?? null;
      this.renderList();
      await this.loadDetail();
    } catch (e) {
      reportError(e);
    }
  }

  private onEvent(e: LiveEvent): void {
    if (e.event !== 'alert_progress' || typeof e.alert_id !== 'number') return;
    const a = this.alerts.find((x) => x.id === e.alert_id);
    if (!a) {
      // Someone else's new alert: the list is reloaded to show it.
      void this.load();
      return;
    }
    a.counts = e.counts as Alert['counts'];
    this.renderList();
    if (a.id === this.selected) {
      this.renderDetail();
      window.clearTimeout(this.recipientsTimer);
      this.recipientsTimer = window.setTimeout(() => void this.loadRecipients(), 700);
    }
  }

  private renderList(): void {
    if (!this.alerts.length) {
      this.list.replaceChildren(h('li', {}, h('p', {}, t('alerts.empty'))));
      return;
    }
    this.list.replaceChildren(...this.alerts.map((a) => {
      const b = h('button', { type: 'button', class: 'item', 'aria-pressed': String(a.id === this.selected), 'data-alert-id': a.id },
        h('span', { class: `sev sev-${a.severity}`, 'aria-hidden': 'true' }),
        h('span', { class: 'item-name' }, alertTitle(a)),
        h('span', { class: 'item-meta' }, `${t(`cap.severity.${a.severity}` as Key)} · ${formatTime(a.created_at)} · ${t('alerts.acked_of', { n: a.counts.acknowledged, total: a.recipient_count })}${a.cancelled_at ? ` · ${t('alerts.cancelled')}` : ''}`));
      b.addEventListener('click', () => {
        this.selected = a.id;
        this.stateFilter = '';
        this.renderList();
        void this.loadDetail();
      });
      return h('li', {}, b);
    }));
  }

  private async loadDetail(): Promise<void> {
    if (this.selected === null) {
      fill(this.detail, h('p', {}, t('alerts.pick')));
      return;
    }
    this.renderDetail();
    await this.loadRecipients();
  }

  private async loadRecipients(): Promise<void> {
    const id = this.selected;
    if (id === null) return;
    try {
      const rows = await ops.recipients(id, this.stateFilter || undefined);
      if (id !== this.selected) return;
      this.recipients = rows;
      this.renderRecipients();
    } catch (e) {
      reportError(e);
    }
  }

  private renderDetail(): void {
    const a = this.alerts.find((x) => x.id === this.selected);
    if (!a) return;
    const total = Math.max(1, a.recipient_count);
    const canCancel = !a.cancelled_at && Date.parse(a.expires_at) > Date.now() && (this.ctx.me.system_admin || (this.ctx.me.roles.includes('adviser') && a.org_id === this.ctx.me.org_id));
    const text = a.translations[language()] ?? a.translations[a.default_language];
    // Each row counts the copies that got at least this far (a read copy was delivered too).
    const bars = LEDGER_STEPS.map((step, i) => {
      const n = LEDGER_STEPS.slice(i).reduce((sum, s) => sum + (a.counts[s] ?? 0), 0);
      return h('div', { class: `ledger-row step-${step}`, 'data-step': step },
        h('span', { class: 'ledger-label' }, t(`ledger.${step}` as Key)),
        h('span', { class: 'ledger-bar', 'aria-hidden': 'true' }, h('span', { style: `inline-size:${(100 * n) / total}%` })),
        h('strong', { class: 'ledger-n', 'data-testid': `count-${step}` }, String(n)));
    });
    let recipientsBox = this.detail.querySelector<HTMLElement>('.recipients');
    recipientsBox ??= h('div', { class: 'recipients' });
    fill(this.detail,
      h('h2', {}, alertTitle(a), a.cancelled_at ? h('small', {}, ` — ${t('alerts.cancelled')}`) : null),
      h('p', { class: 'meta' }, `${t(`cap.severity.${a.severity}` as Key)} · ${t(`cap.urgency.${a.urgency}` as Key)} · ${t('alerts.sent_at', { t: formatTime(a.created_at) })} · ${t('alerts.expires_at', { t: formatTime(a.expires_at) })}`),
      text ? h('p', { lang: a.translations[language()] ? language() : a.default_language, dir: 'auto' }, text.body) : null,
      h('div', { class: 'ledger', role: 'group', 'aria-label': t('alerts.ledger', { n: a.recipient_count }), 'data-testid': 'ledger' },
        h('h3', {}, t('alerts.ledger', { n: a.recipient_count })), h('p', { class: 'hint' }, t('alerts.ledger_hint')), ...bars,
        a.counts.sms_messages ? h('p', { class: 'meta' }, t('alerts.sms', { n: a.counts.sms_messages, segments: a.counts.sms_segments })) : null),
      canCancel ? h('div', { class: 'toolbar' }, button(t('alerts.cancel'), () => void this.cancel(a), { class: 'danger', 'data-testid': 'alert-cancel' })) : null,
      recipientsBox);
  }

  private renderRecipients(): void {
    const box = this.detail.querySelector<HTMLElement>('.recipients');
    if (!box) return;
    const filter = h('select', { 'data-testid': 'recipient-filter' },
      h('option', { value: '' }, t('alerts.all_states')),
      ...LEDGER_STEPS.map((s) => h('option', { value: s, selected: s === this.stateFilter }, t(`ledger.${s}` as Key))));
    filter.setAttribute('aria-label', t('alerts.filter_state'));
    filter.addEventListener('change', () => {
      this.stateFilter = filter.value;
      void this.loadRecipients();
    });
    const orgName = (id: number) => this.ctx.organisations.find((o) => o.id === id)?.short_name ?? `#${id}`;
    const when = (r: RecipientRow) => r.acknowledged_at ?? r.read_at ?? r.delivered_at ?? r.sent_at;
    fill(box,
      h('div', { class: 'toolbar' }, h('label', { class: 'inline' }, t('alerts.filter_state'), filter)),
      table(t('alerts.recipients', { n: this.recipients.length }), [t('people.name'), t('people.org'), t('alerts.reasons'), t('alerts.state'), t('alerts.channel'), t('alerts.when')],
        this.recipients.map((r) => [r.name, orgName(r.org_id), r.reasons.split(',').map(reasonLabel).join(', '),
          h('span', { class: `state state-${r.state}`, 'data-state': r.state }, t(`ledger.${r.state}` as Key)), r.channel ?? t('none'),
          when(r) ? formatTime(when(r)!) : t('none')]),
        { class: 'compact', 'data-testid': 'recipients' }));
  }

  private async cancel(a: Alert): Promise<void> {
    const confirm = button(t('alerts.cancel'), async () => {
      dlg.close();
      try {
        const updated = await ops.cancelAlert(a.id);
        Object.assign(a, updated);
        announce(t('alerts.cancelled_done'));
        this.renderList();
        this.renderDetail();
        void this.loadRecipients();
      } catch (e) {
        reportError(e);
      }
    }, { class: 'danger' });
    const dlg = openDialog(t('alerts.cancel'), h('p', {}, t('alerts.cancel_confirm', { title: alertTitle(a) })), [confirm, button(t('area.cancel'), () => dlg.close())]);
  }
}
