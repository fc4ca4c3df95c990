// Roll-calls: start one (the same targeting as alerts), then the live board — safe, need
// help, no answer, unreachable — by organisation and by area, every name one click from the
// person's answer and phone; mark someone accounted for, close, export the CSV.

import { ApiError, fetchText, ops, type Board, type Rollcall, type RollcallCounts, type RollcallPerson } from '../api';
import { formatTime, reasonLabel, t, type Key } from '../i18n';
import { announce, button, download, errorText, field, fill, h, openDialog, reportError, table } from '../ui';
import type { LiveEvent } from '../ws';
import { followOperations, listAndDetail } from './layout';
import { isOperations, type ConsoleContext, type Screen } from './main';
import { TargetPicker } from './target';

const STATUSES = ['safe', 'need_help', 'no_answer', 'unreachable'] as const;
type Status = (typeof STATUSES)[number];

export const rollcallsScreen: Screen = {
  id: 'rollcalls',
  label: 'nav.rollcalls',
  allowed: isOperations,
  async create(ctx, container) {
    const screen = new RollcallScreen(ctx, container);
    await screen.load();
    return { shown: () => void screen.load(), dispose: () => screen.dispose() };
  },
};

/** A person's row status as the board counts it. */
function boardStatus(p: RollcallPerson): Status {
  return p.status === 'no_answer' && !p.delivered_at ? 'unreachable' : p.status;
}

class RollcallScreen {
  private calls: Rollcall[] = [];
  private selected: number | null = null;
  private composing = false;
  private people: RollcallPerson[] = [];
  private filter: Status | '' = '';
  private readonly list = h('ul', { class: 'list', 'data-testid': 'rollcall-list', 'aria-label': t('rollcall.list') });
  private readonly main = h('section', { class: 'detail-pane', 'data-testid': 'rollcall-detail' });
  private readonly unlisten: Array<() => void> = [];
  private peopleTimer: number | undefined;
  private readonly canRun: boolean;

  constructor(private readonly ctx: ConsoleContext, container: HTMLElement) {
    this.canRun = ctx.me.system_admin || ctx.me.roles.some((r) => r === 'operator' || r === 'adviser');
    listAndDetail(container, t('rollcall.title'), [
      this.canRun ? h('div', { class: 'toolbar' }, button(t('rollcall.new'), () => this.compose(), { class: 'primary', 'data-testid': 'rollcall-new' })) : null,
      this.list,
    ], this.main);
    this.unlisten.push(...followOperations(ctx, (e) => this.onEvent(e), () => void this.load()));
  }

  dispose(): void {
    this.unlisten.forEach((u) => u());
  }

  async load(): Promise<void> {
    try {
      this.calls = await ops.rollcalls();
      this.selected ??= this.calls[0]?.id ?? null;
      this.renderList();
      if (!this.composing) await this.showSelected();
    } catch (e) {
      reportError(e);
    }
  }

  private onEvent(e: LiveEvent): void {
    if (e.event !== 'rollcall_board' || typeof e.rollcall_id !== 'number') return;
    const call = this.calls.find((c) => c.id === e.rollcall_id);
    if (!call) return;
    // The live counts come without the split by area (costly to count at every answer): the
    // last one stays until the roll-call is read again, just after.
    const live = e.board as Board;
    call.board = { ...live, by_area: live.by_area?.length ? live.by_area : call.board.by_area };
    this.renderList();
    if (call.id === this.selected && !this.composing) {
      this.renderBoard(call);
      window.clearTimeout(this.peopleTimer);
      this.peopleTimer = window.setTimeout(() => void this.refreshSelected(), 500);
    }
  }

  private renderList(): void {
    if (!this.calls.length) {
      this.list.replaceChildren(h('li', {}, h('p', {}, t('rollcall.empty'))));
      return;
    }
    this.list.replaceChildren(...this.calls.map((c) => {
      const b = h('button', { type: 'button', class: 'item', 'aria-pressed': String(c.id === this.selected && !this.composing), 'data-rollcall-id': c.id },
        h('span', { class: `dot ${c.closed_at ? 'closed' : 'open'}`, 'aria-hidden': 'true' }),
        h('span', { class: 'item-name' }, c.title),
        h('span', { class: 'item-meta' }, `${formatTime(c.created_at)} · ${t('rollcall.safe_of', { n: c.board.safe, total: c.board.total })}${c.closed_at ? ` · ${t('rollcall.closed')}` : ''}`));
      b.addEventListener('click', () => {
        this.selected = c.id;
        this.composing = false;
        this.filter = '';
        this.renderList();
        void this.showSelected();
      });
      return h('li', {}, b);
    }));
  }

  // ---- starting one ----

  private compose(): void {
    this.composing = true;
    this.renderList();
    const picker = new TargetPicker(this.ctx, null);
    const title = h('input', { type: 'text', required: true, maxlength: '200', 'data-testid': 'rollcall-title' });
    const message = h('textarea', { rows: '2', maxlength: '2000', placeholder: t('rollcall.default_message'), 'data-testid': 'rollcall-message' });
    const remind = h('select', {}, ...[0, 300, 900, 1800].map((s) => h('option', { value: String(s) }, s ? t('target.fresh_min', { n: s / 60 }) : t('rollcall.no_reminders'))));
    const status = h('p', { class: 'form-status', role: 'alert', 'data-testid': 'rollcall-status' });
    const form = h('form', { class: 'card narrow', 'aria-labelledby': 'rollcall-new-title' },
      h('h2', { id: 'rollcall-new-title' }, t('rollcall.new')),
      field(t('rollcall.name'), title),
      field(t('rollcall.message'), message),
      field(t('rollcall.remind'), remind),
      picker.element,
      h('div', { class: 'toolbar' },
        h('button', { type: 'submit', class: 'primary', 'data-testid': 'rollcall-start' }, t('rollcall.start')),
        button(t('area.cancel'), () => {
          this.composing = false;
          this.renderList();
          void this.showSelected();
        })),
      status);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      status.textContent = '';
      if (!title.value.trim()) {
        status.textContent = t('rollcall.need_title');
        title.focus();
        return;
      }
      try {
        const call = await ops.startRollcall({
          title: title.value.trim(),
          ...(message.value.trim() ? { message: message.value.trim() } : {}),
          target: picker.value(),
          ...(Number(remind.value) ? { reminder_every_secs: Number(remind.value) } : {}),
        });
        announce(t('rollcall.started', { n: call.people_count }));
        this.composing = false;
        this.selected = call.id;
        await this.load();
      } catch (err) {
        status.textContent = err instanceof ApiError && err.status === 422 ? t('compose.refused', { detail: errorText(err) }) : t('error.generic', { detail: errorText(err) });
      }
    });
    fill(this.main, form);
    void picker.load().then(() => title.focus());
  }

  // ---- the board ----

  private async showSelected(): Promise<void> {
    const call = this.calls.find((c) => c.id === this.selected);
    if (!call) {
      fill(this.main, h('p', {}, this.canRun ? t('rollcall.pick_or_start') : t('rollcall.pick')));
      return;
    }
    this.renderBoard(call);
    await this.loadPeople();
  }

  /** Reads the selected roll-call's whole board and people again. */
  private async refreshSelected(): Promise<void> {
    const id = this.selected;
    if (id === null) return;
    try {
      const fresh = await ops.rollcall(id);
      const i = this.calls.findIndex((c) => c.id === id);
      if (i < 0 || id !== this.selected || this.composing) return;
      this.calls[i] = fresh;
      this.renderBoard(fresh);
      await this.loadPeople();
    } catch (e) {
      reportError(e);
    }
  }

  private async loadPeople(): Promise<void> {
    const id = this.selected;
    if (id === null) return;
    try {
      const rows = await ops.rollcallPeople(id);
      if (id !== this.selected || this.composing) return;
      this.people = rows;
      this.renderPeople();
    } catch (e) {
      reportError(e);
    }
  }

  private renderBoard(call: Rollcall): void {
    const b = call.board;
    const open = !call.closed_at;
    const canRun = this.canRun && call.org_id === this.ctx.me.org_id;
    const orgName = (id: string) => this.ctx.organisations.find((o) => String(o.id) === id)?.short_name ?? `#${id}`;
    const tiles = STATUSES.map((s) => {
      const tile = h('button', { type: 'button', class: `tile tile-${s}`, 'aria-pressed': String(this.filter === s), 'data-testid': `tile-${s}` },
        h('strong', {}, String(b[s])), h('span', {}, t(`rollcall.${s}` as Key)));
      tile.addEventListener('click', () => {
        this.filter = this.filter === s ? '' : s;
        this.renderBoard(call);
        this.renderPeople();
      });
      return tile;
    });
    const counts = (c: RollcallCounts) => STATUSES.map((s) => String(c[s] ?? 0));
    const csv = h('a', { href: `/api/v1/rollcalls/${call.id}/export.csv`, class: 'button', download: `rollcall-${call.id}.csv`, 'data-testid': 'rollcall-csv' }, t('rollcall.csv'));
    csv.addEventListener('click', (e) => {
      // The export needs the session's token: fetched, then saved.
      e.preventDefault();
      fetchText(`/rollcalls/${call.id}/export.csv`).then((text) => download(`rollcall-${call.id}.csv`, text, 'text/csv'), reportError);
    });
    let peopleBox = this.main.querySelector<HTMLElement>('.rollcall-people');
    peopleBox ??= h('div', { class: 'rollcall-people' });
    fill(this.main,
      h('h2', {}, call.title, call.closed_at ? h('small', {}, ` — ${t('rollcall.closed_at', { t: formatTime(call.closed_at) })}`) : null),
      h('p', { class: 'meta' }, `${call.message} · ${t('rollcall.started_at', { t: formatTime(call.created_at) })} · ${t('rollcall.asked', { n: b.total })}`),
      h('div', { class: 'tiles', role: 'group', 'aria-label': t('rollcall.board'), 'data-testid': 'rollcall-board' }, ...tiles),
      h('div', { class: 'toolbar' },
        csv,
        open && canRun ? button(t('rollcall.close'), () => void this.close(call), { class: 'danger', 'data-testid': 'rollcall-close' }) : null),
      h('div', { class: 'two-tables' },
        table(t('rollcall.by_org'), [t('people.org'), ...STATUSES.map((s) => t(`rollcall.${s}` as Key))],
          Object.entries(b.by_organisation).map(([id, c]) => [orgName(id), ...counts(c)]), { class: 'compact', 'data-testid': 'rollcall-by-org' }),
        table(t('rollcall.by_area'), [t('rollcall.area'), ...STATUSES.map((s) => t(`rollcall.${s}` as Key))],
          (b.by_area ?? []).map((a) => [a.area_id === null ? t('rollcall.no_position') : a.name, ...counts(a.counts)]), { class: 'compact', 'data-testid': 'rollcall-by-area' })),
      peopleBox);
  }

  private renderPeople(): void {
    const box = this.main.querySelector<HTMLElement>('.rollcall-people');
    const call = this.calls.find((c) => c.id === this.selected);
    if (!box || !call) return;
    const shown = this.people.filter((p) => !this.filter || boardStatus(p) === this.filter);
    const rows = shown.map((p) => {
      const s = boardStatus(p);
      const name = h('button', { type: 'button', class: 'link', 'data-user-id': p.user_id }, p.name);
      name.addEventListener('click', () => this.person(call, p));
      return h('tr', { 'data-status': s }, h('th', { scope: 'row' }, name),
        h('td', {}, h('span', { class: `state status-${s}` }, t(`rollcall.${s}` as Key))),
        h('td', {}, p.note ?? ''),
        h('td', {}, p.answered_at ? formatTime(p.answered_at) : t('none')),
        h('td', {}, p.accounted_how ? t('rollcall.accounted_how', { how: p.accounted_how }) : p.answered_via ?? ''));
    });
    fill(box, h('table', { class: 'compact', 'data-testid': 'rollcall-people' },
      h('caption', {}, this.filter ? `${t('rollcall.people')} — ${t(`rollcall.${this.filter}` as Key)} (${shown.length})` : `${t('rollcall.people')} (${shown.length})`),
      h('thead', {}, h('tr', {}, ...[t('people.name'), t('rollcall.status'), t('rollcall.note'), t('rollcall.answered'), t('rollcall.via')].map((x) => h('th', { scope: 'col' }, x)))),
      h('tbody', {}, ...rows)));
  }

  /** One person's answer, phone and location, and marking them accounted for. */
  private person(call: Rollcall, p: RollcallPerson): void {
    const s = boardStatus(p);
    const rows: Array<[string, string | Node]> = [
      [t('rollcall.status'), t(`rollcall.${s}` as Key)],
      [t('rollcall.phone'), p.phone ? h('a', { href: `tel:${p.phone}` }, p.phone) : t('none')],
      [t('people.org'), this.ctx.organisations.find((o) => o.id === p.org_id)?.name ?? `#${p.org_id}`],
      [t('alerts.reasons'), p.reasons.split(',').map(reasonLabel).join(', ')],
      [t('rollcall.answered'), p.answered_at ? `${formatTime(p.answered_at)} (${p.answered_via ?? ''})` : t('none')],
      [t('rollcall.note'), p.note ?? t('none')],
      [t('rollcall.location'), p.lat !== null && p.lon !== null ? `${p.lat.toFixed(5)}, ${p.lon.toFixed(5)}` : t('none')],
      [t('rollcall.delivered'), p.delivered_at ? formatTime(p.delivered_at) : t('rollcall.not_delivered')],
    ];
    if (p.accounted_how) rows.push([t('rollcall.accounted'), p.accounted_how]);
    const body = h('div', { class: 'dialog-body', 'data-testid': 'person-detail' },
      h('dl', { class: 'facts' }, ...rows.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])));
    const actions: HTMLButtonElement[] = [];
    if (!call.closed_at && this.canRun && call.org_id === this.ctx.me.org_id) {
      const how = h('input', { type: 'text', required: true, placeholder: t('rollcall.how_placeholder'), 'data-testid': 'account-how' });
      const status = h('select', { 'data-testid': 'account-status' }, h('option', { value: 'safe' }, t('rollcall.safe')), h('option', { value: 'need_help' }, t('rollcall.need_help')));
      const note = h('input', { type: 'text' });
      const msg = h('p', { class: 'form-status', role: 'alert' });
      body.append(h('h3', {}, t('rollcall.account')), field(t('rollcall.status'), status), field(t('rollcall.how'), how), field(t('rollcall.note'), note), msg);
      actions.push(button(t('rollcall.account'), async () => {
        if (!how.value.trim()) {
          msg.textContent = t('rollcall.need_how');
          how.focus();
          return;
        }
        try {
          await ops.account(call.id, { user_id: p.user_id, ...(p.dependant_id ? { dependant_id: p.dependant_id } : {}), status: status.value as 'safe' | 'need_help', how: how.value.trim(), ...(note.value.trim() ? { note: note.value.trim() } : {}) });
          dlg.close();
          announce(t('rollcall.accounted_done', { name: p.name }));
          await this.loadPeople();
        } catch (e) {
          msg.textContent = t('error.generic', { detail: errorText(e) });
        }
      }, { class: 'primary', 'data-testid': 'account-save' }));
    }
    const dlg = openDialog(p.name, body, actions);
  }

  private async close(call: Rollcall): Promise<void> {
    const confirm = button(t('rollcall.close'), async () => {
      dlg.close();
      try {
        const closed = await ops.closeRollcall(call.id);
        Object.assign(call, closed);
        announce(t('rollcall.closed_done'));
        this.renderList();
        await this.showSelected();
      } catch (e) {
        reportError(e);
      }
    }, { class: 'danger' });
    const dlg = openDialog(t('rollcall.close'), h('p', {}, t('rollcall.close_confirm', { title: call.title })), [confirm, button(t('area.cancel'), () => dlg.close())]);
  }
}
