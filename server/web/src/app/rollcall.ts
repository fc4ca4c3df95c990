// Answering a roll-call: safe or need help, a note, and optionally this one location (allowed
// in location-less mode too: it is kept with the answer only).

import { ops, type MyRollcall, type RollcallPerson } from '../api';
import { formatTime, t, type Key } from '../i18n';
import { announce, errorText, fill, h } from '../ui';
import { currentFix, type AppContext, type AppScreen } from './context';

/** Stored message kinds that concern roll-calls (they refresh this tab). */
export const ROLLCALL_KINDS = new Set(['rollcall', 'rollcall_reminder', 'rollcall_closed']);

export const rollcallScreen: AppScreen = {
  id: 'rollcall',
  label: 'nav.rollcall',
  badge: (ctx) => openUnanswered(ctx),
  async render(ctx, container) {
    container.replaceChildren(h('h1', {}, t('answer.title')), h('p', {}, t('loading')));
    let calls: MyRollcall[];
    try {
      calls = await ops.myRollcalls();
    } catch (e) {
      container.replaceChildren(h('h1', {}, t('answer.title')), h('p', { role: 'alert' }, t('error.generic', { detail: errorText(e) })));
      return;
    }
    unanswered.set(ctx.me.id, waiting(calls));
    const open = calls.filter((c) => !c.closed_at);
    const closed = calls.filter((c) => c.closed_at).slice(0, 5);
    fill(container,
      h('h1', {}, t('answer.title')),
      open.length ? h('div', { class: 'inbox', 'data-testid': 'rollcalls' }, ...open.map((c) => card(ctx, c, () => void rollcallScreen.render(ctx, container)))) : h('p', { 'data-testid': 'rollcall-none' }, t('answer.none')),
      closed.length ? h('section', { 'aria-labelledby': 'rc-closed' }, h('h2', { id: 'rc-closed' }, t('answer.closed_ones')),
        h('ul', { class: 'plain-list' }, ...closed.map((c) => h('li', {}, `${c.title} · ${formatTime(c.created_at)} · ${statusText(c.rows[0])}`)))) : null);
  },
};

const unanswered = new Map<number, number>();

/** Counts the open roll-calls waiting for the person's answer (for the tab's badge). */
export async function countUnanswered(ctx: AppContext): Promise<void> {
  unanswered.set(ctx.me.id, waiting(await ops.myRollcalls()));
}

function waiting(calls: MyRollcall[]): number {
  return calls.filter((c) => !c.closed_at && c.rows.some((r) => r.status === 'no_answer')).length;
}

function openUnanswered(ctx: AppContext): number {
  return unanswered.get(ctx.me.id) ?? 0;
}

function statusText(row: RollcallPerson | undefined): string {
  return row ? t(`rollcall.${row.status}` as Key) : '';
}

function card(ctx: AppContext, c: MyRollcall, rerender: () => void): HTMLElement {
  return h('article', { class: 'message rollcall-card', 'data-rollcall-id': c.id },
    h('h2', { dir: 'auto' }, c.title),
    h('p', { class: 'question', dir: 'auto' }, c.message),
    h('p', { class: 'meta' }, formatTime(c.created_at)),
    ...c.rows.map((row) => answerForm(ctx, c, row, rerender)));
}

/**
 * What the person has typed or ticked but not sent, per roll-call and row: a reminder or an
 * update arriving redraws the tab, and must not wipe a half-written note.
 */
const drafts = new Map<string, { note: string; share: boolean }>();

function answerForm(ctx: AppContext, c: MyRollcall, row: RollcallPerson, rerender: () => void): HTMLElement {
  const forWhom = row.dependant_id ? t('answer.for', { name: row.name }) : t('answer.me');
  const key = `${c.id}-${row.dependant_id}`;
  const draft = drafts.get(key) ?? { note: '', share: false };
  const note = h('textarea', { rows: '2', maxlength: '2000', 'data-testid': 'answer-note' });
  const share = h('input', { type: 'checkbox', 'data-testid': 'answer-share' });
  note.value = draft.note;
  share.checked = draft.share;
  const keep = () => drafts.set(key, { note: note.value, share: share.checked });
  note.addEventListener('input', keep);
  share.addEventListener('change', keep);
  const status = h('p', { class: 'track-status', role: 'status' });
  const send = async (answer: 'safe' | 'need_help') => {
    status.textContent = t('answer.sending');
    const position = share.checked ? await currentFix() : null;
    if (share.checked && !position) status.textContent = t('answer.no_fix');
    try {
      await ops.answer(c.id, { status: answer, ...(note.value.trim() ? { note: note.value.trim() } : {}), ...(position ? { position } : {}), ...(row.dependant_id ? { dependant_id: row.dependant_id } : {}) });
      drafts.delete(key);
      announce(t('answer.sent'));
      rerender();
    } catch (e) {
      status.textContent = t('error.generic', { detail: errorText(e) });
    }
  };
  const current = row.status === 'no_answer' ? null : h('p', { class: `done status-${row.status}`, 'data-testid': 'answer-current' }, t('answer.current', { status: t(`rollcall.${row.status}` as Key) }), row.answered_at ? ` · ${formatTime(row.answered_at)}` : '');
  const safe = h('button', { type: 'button', class: 'big safe', 'data-testid': 'answer-safe' }, t('answer.safe'));
  const help = h('button', { type: 'button', class: 'big help', 'data-testid': 'answer-help' }, t('answer.help'));
  safe.addEventListener('click', () => void send('safe'));
  help.addEventListener('click', () => void send('need_help'));
  const noteId = `note-${c.id}-${row.dependant_id}`;
  note.id = noteId;
  return h('fieldset', { class: 'answer' },
    h('legend', {}, forWhom),
    current,
    h('div', { class: 'answer-buttons' }, safe, help),
    h('div', { class: 'field' }, h('label', { for: noteId }, t('answer.note')), note),
    h('label', { class: 'inline' }, share, ' ', ctx.me.location_mode === 'location_less' ? t('answer.share_once_less') : t('answer.share_once')),
    status);
}
