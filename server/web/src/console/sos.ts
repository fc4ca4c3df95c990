// The SOS inbox (operators, oversight): open cases as they come (stored `sos` / `sos_update`
// messages), claiming one (or taking it over), the chat with the person, notes, the case's
// timeline, and closing it with an outcome.

import { ops, type SosCase } from '../api';
import { ChatView } from '../chat';
import { formatAge, formatTime, t, type Key } from '../i18n';
import { announce, button, errorText, field, fill, h, reportError } from '../ui';
import type { InboxMessage } from '../ws';
import { listAndDetail } from './layout';
import type { ConsoleContext, Screen } from './main';

export const sosScreen: Screen = {
  id: 'sos',
  label: 'nav.sos',
  allowed: (me) => me.system_admin || me.roles.includes('operator') || me.roles.includes('oversight'),
  async create(ctx, container) {
    const inbox = new SosInbox(ctx, container);
    await inbox.load();
    return { shown: () => void inbox.load(), dispose: () => inbox.dispose() };
  },
};

/**
 * Watches for new SOS cases wherever the operator is in the console: a new case is said at
 * once (assertively) and `count` hears how many cases nobody has claimed yet.
 */
export function watchSos(ctx: ConsoleContext, count: (unclaimed: number) => void): void {
  // The stream is replayed from the start at each page load: only fresh cases are announced.
  const since = Date.now() - 60_000;
  let timer: number | undefined;
  const recount = () => {
    window.clearTimeout(timer);
    timer = window.setTimeout(() => void ops.sosCases().then((cases) => count(cases.filter((c) => c.status === 'open').length), () => undefined), 400);
  };
  ctx.messages.onAdd((m) => {
    if (m.kind !== 'sos' && m.kind !== 'sos_update') return;
    const c = (m.payload as { case?: SosCase }).case;
    if (m.kind === 'sos' && c && Date.parse(m.at) > since) announce(t('sos.new_case', { name: c.user_name }), 'error');
    recount();
  });
  recount();
}

class SosInbox {
  private cases: SosCase[] = [];
  private selected: number | null = null;
  private chat: ChatView | null = null;
  private chatFor: number | null = null;
  private readonly list = h('ul', { class: 'list', 'data-testid': 'sos-list', 'aria-label': t('sos.open_cases') });
  private readonly detail = h('section', { class: 'detail-pane sos-detail', 'data-testid': 'sos-detail' });
  private readonly chatBox = h('div', { class: 'sos-chat' });
  private readonly unlisten: Array<() => void> = [];
  private reloadTimer: number | undefined;
  private readonly drafts = new Map<number, { note: string; outcome: string }>();

  constructor(private readonly ctx: ConsoleContext, container: HTMLElement) {
    listAndDetail(container, t('sos.title'), [this.list], this.detail, this.chatBox);
    container.querySelector('.page')?.classList.add('sos-page');
    this.unlisten.push(ctx.messages.onAdd((m) => this.onMessage(m)));
  }

  dispose(): void {
    this.unlisten.forEach((u) => u());
    this.chat?.dispose();
  }

  private onMessage(m: InboxMessage): void {
    // A chat this inbox does not show yet may be a new case's, linked after the case was sent.
    const unseenChat = m.kind === 'chat' && m.payload.conversation_id !== this.chatFor;
    if (m.kind !== 'sos' && m.kind !== 'sos_update' && !unseenChat) return;
    // A console that connects gets its whole stream again: reload once it has settled.
    window.clearTimeout(this.reloadTimer);
    this.reloadTimer = window.setTimeout(() => void this.load(), 300);
  }

  async load(): Promise<void> {
    try {
      this.cases = await ops.sosCases();
      if (this.selected !== null && !this.cases.some((c) => c.id === this.selected)) {
        // Closed since: still shown until another is picked.
        const closed = await ops.sosCase(this.selected).catch(() => null);
        if (closed) this.cases.push(closed);
      }
      this.selected ??= this.cases[0]?.id ?? null;
      this.renderList();
      await this.renderDetail();
    } catch (e) {
      reportError(e);
    }
  }

  private renderList(): void {
    if (!this.cases.length) {
      this.list.replaceChildren(h('li', {}, h('p', { 'data-testid': 'sos-empty' }, t('sos.empty'))));
      return;
    }
    this.list.replaceChildren(...this.cases.map((c) => {
      const b = h('button', { type: 'button', class: `item sos-item status-${c.status}`, 'aria-pressed': String(c.id === this.selected), 'data-case-id': c.id },
        h('span', { class: `dot sos-${c.status}`, 'aria-hidden': 'true' }),
        h('span', { class: 'item-name' }, c.user_name),
        h('span', { class: 'item-meta' }, `${t(`sos.status.${c.status}` as Key)} · ${t('person.ago', { t: formatAge(c.opened_at) })}`));
      b.addEventListener('click', () => {
        this.selected = c.id;
        this.renderList();
        void this.renderDetail();
      });
      return h('li', {}, b);
    }));
  }

  private async renderDetail(): Promise<void> {
    if (this.selected === null) {
      fill(this.detail, h('p', {}, t('sos.none_open')));
      this.setChat(null);
      return;
    }
    let c: SosCase;
    try {
      c = await ops.sosCase(this.selected);
    } catch (e) {
      reportError(e);
      return;
    }
    const mine = c.claimed_by === this.ctx.me.id;
    const handles = this.ctx.me.system_admin || this.ctx.me.roles.includes('operator');
    const who = (id: number | null) => (id === null ? t('sos.system') : id === this.ctx.me.id ? t('chat.you') : id === c.user_id ? c.user_name : `#${id}`);
    const pos = c.position;
    const facts: Array<[string, string | Node]> = [
      [t('sos.state'), t(`sos.status.${c.status}` as Key)],
      [t('sos.opened'), formatTime(c.opened_at)],
      [t('rollcall.phone'), c.phone ? h('a', { href: `tel:${c.phone}` }, c.phone) : t('none')],
      [t('sos.position'), pos ? `${pos.lat.toFixed(5)}, ${pos.lon.toFixed(5)}${pos.accuracy_m ? ` (±${Math.round(pos.accuracy_m)} m)` : ''} · ${formatTime(pos.at)} · ${t(pos.source === 'shared_once' ? 'sos.shared_once' : 'sos.tracking')}` : t('sos.no_position')],
      [t('sos.claimed_by'), c.claimed_by ? `${who(c.claimed_by)} · ${c.claimed_at ? formatTime(c.claimed_at) : ''}` : t('sos.unclaimed')],
    ];
    if (c.outcome) facts.push([t('sos.outcome'), c.outcome]);
    const actions: Node[] = [];
    if (handles && c.status !== 'closed' && !mine) {
      actions.push(button(c.claimed_by ? t('sos.take_over') : t('sos.claim'), () => void this.act(() => ops.claim(c.id, c.claimed_by !== null), 'sos.claimed_done'), { class: 'primary', 'data-testid': 'sos-claim' }));
    }
    // What the operator is typing survives the redraws that every update of the case causes.
    const draft = this.drafts.get(c.id) ?? { note: '', outcome: '' };
    this.drafts.set(c.id, draft);
    const note = h('textarea', { rows: '2', maxlength: '4000', 'data-testid': 'sos-note' });
    const outcome = h('input', { type: 'text', maxlength: '4000', 'data-testid': 'sos-outcome' });
    note.value = draft.note;
    outcome.value = draft.outcome;
    note.addEventListener('input', () => (draft.note = note.value));
    outcome.addEventListener('input', () => (draft.outcome = outcome.value));
    const focused = document.activeElement?.getAttribute('data-testid');
    const forms: Node[] = [];
    if (handles && c.status !== 'closed') {
      const noteForm = h('form', { class: 'inline-form' }, field(t('sos.note'), note), h('button', { type: 'submit' }, t('sos.add_note')));
      noteForm.addEventListener('submit', (e) => {
        e.preventDefault();
        const text = note.value.trim();
        if (text) void this.act(() => ops.sosNote(c.id, text).then(() => (draft.note = '')), 'sos.note_added');
      });
      const closeForm = h('form', { class: 'inline-form' }, field(t('sos.outcome'), outcome, t('sos.outcome_hint')), h('button', { type: 'submit', class: 'danger', 'data-testid': 'sos-close' }, t('sos.close')));
      closeForm.addEventListener('submit', (e) => {
        e.preventDefault();
        if (!outcome.value.trim()) {
          outcome.focus();
          announce(t('sos.need_outcome'), 'error');
          return;
        }
        void this.act(() => ops.closeSos(c.id, outcome.value.trim()), 'sos.closed_done');
      });
      forms.push(noteForm, closeForm);
    }
    const timeline = (c.timeline ?? []).map((ev) => h('li', {}, h('strong', {}, t(`sos.event.${ev.kind}` as Key)), ` · ${who(ev.actor_id)} · ${formatTime(ev.at)}`, timelineDetail(ev.detail)));
    fill(this.detail,
      h('h2', {}, t('sos.case_of', { name: c.user_name })),
      h('dl', { class: 'facts', 'data-testid': 'sos-facts' }, ...facts.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
      actions.length ? h('div', { class: 'toolbar' }, ...actions) : null,
      ...forms,
      h('section', { 'aria-labelledby': 'sos-timeline' }, h('h3', { id: 'sos-timeline' }, t('sos.timeline')), h('ol', { class: 'timeline', 'data-testid': 'sos-timeline' }, ...timeline)));
    if (focused === 'sos-note' || focused === 'sos-outcome') this.detail.querySelector<HTMLElement>(`[data-testid=${focused}]`)?.focus();
    this.setChat(c);
  }

  private setChat(c: SosCase | null): void {
    const id = c?.conversation_id ?? null;
    if (id === this.chatFor) return;
    this.chat?.dispose();
    this.chat = null;
    this.chatFor = id;
    if (!c || id === null) {
      this.chatBox.replaceChildren();
      return;
    }
    const view = new ChatView(id, this.ctx.me.id, { socket: this.ctx.socket, onMessage: (l) => this.ctx.messages.onAdd(l) }, t('sos.chat_with', { name: c.user_name }));
    this.chat = view;
    this.chatBox.replaceChildren(view.element);
    view.load().catch(reportError);
  }

  private async act(call: () => Promise<unknown>, done: Key): Promise<void> {
    try {
      await call();
    } catch (e) {
      announce(t('error.generic', { detail: errorText(e) }), 'error');
      return;
    }
    announce(t(done));
    await this.load();
  }
}

/** The note, outcome or position a timeline event carries (stored as JSON text). */
function timelineDetail(detail: string): string {
  try {
    const d = JSON.parse(detail) as { note?: string | null; text?: string; outcome?: string };
    const text = d.note ?? d.text ?? d.outcome;
    return text ? ` — ${text}` : '';
  } catch {
    return detail ? ` — ${detail}` : '';
  }
}
