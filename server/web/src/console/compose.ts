// The alert composer (advisers): text per language (Arabic right to left), the CAP fields,
// expiry and security level, a template to start from, the target (stored areas, shapes drawn
// on the map for this alert, organisations, roles, duty stations, everyone, freshness), a
// preview counted by reason and drawn on the map, then send.

import { ApiError, api, CATEGORIES, CERTAINTIES, SEVERITIES, URGENCIES, ops, type AlertInput, type AlertTemplate, type Preview, type Translation } from '../api';
import { levelLabel, t, type Key } from '../i18n';
import { VigilMap } from '../map';
import { announce, button, errorText, field, fill, h, openDialog, reportError, uid } from '../ui';
import { showAlert } from './alerts';
import { toPoint } from './map-screen';
import { type ConsoleContext, type Screen } from './main';
import { REASONS, TargetPicker } from './target';

/** The languages every alert can be written in; Arabic is written right to left. */
export const ALERT_LANGUAGES = [
  { code: 'en', name: 'English', dir: 'ltr' },
  { code: 'fr', name: 'Français', dir: 'ltr' },
  { code: 'ar', name: 'العربية', dir: 'rtl' },
] as const;

export const composeScreen: Screen = {
  id: 'compose',
  label: 'nav.compose',
  allowed: (me) => me.system_admin || me.roles.includes('adviser'),
  async create(ctx, container) {
    return new Composer(ctx, container).start();
  },
};

class Composer {
  private vmap!: VigilMap;
  private picker!: TargetPicker;
  private templates: AlertTemplate[] = [];
  private readonly texts = new Map<string, { title: HTMLInputElement; body: HTMLTextAreaElement; instructions: HTMLTextAreaElement }>();
  private readonly severity = select(SEVERITIES, 'severity', 'severe');
  private readonly urgency = select(URGENCIES, 'urgency', 'immediate');
  private readonly certainty = select(CERTAINTIES, 'certainty', 'observed');
  private readonly category = select(CATEGORIES, 'category', 'security');
  private readonly level = h('select', { 'data-testid': 'alert-level' }, h('option', { value: '' }, t('level.none')), ...[1, 2, 3, 4, 5, 6].map((l) => h('option', { value: String(l) }, levelLabel(l))));
  private readonly expires = h('input', { type: 'datetime-local', 'data-testid': 'alert-expires' });
  private readonly sms = h('input', { type: 'checkbox', checked: true });
  private readonly previewBox = h('div', { class: 'preview', role: 'status', 'aria-live': 'polite', 'data-testid': 'preview' });
  private readonly status = h('p', { class: 'form-status', role: 'alert', 'data-testid': 'compose-status' });
  private readonly drawBar = h('div', { class: 'draw-bar', role: 'region', 'aria-live': 'polite', hidden: true });
  private previewTimer: number | undefined;
  private previewRun = 0;

  constructor(private readonly ctx: ConsoleContext, private readonly container: HTMLElement) {}

  async start() {
    const mapEl = h('div', { class: 'map', 'data-testid': 'compose-map' });
    const form = h('form', { class: 'panel-body compose-form', 'aria-labelledby': 'compose-title', novalidate: true });
    // The preview lies over the map, beside what it counts.
    this.previewBox.classList.add('map-overlay');
    this.container.replaceChildren(
      h('aside', { class: 'panel' }, form),
      h('div', { class: 'map-wrap' }, mapEl, this.drawBar, this.previewBox));
    this.vmap = await VigilMap.create(mapEl, this.ctx.config);
    this.picker = new TargetPicker(this.ctx, this.vmap, this.drawBar);
    this.picker.onChange(() => this.targetChanged());
    await Promise.all([
      this.picker.load(),
      ops.templates().then((list) => (this.templates = list)).catch(() => []),
      // Where people were last seen, to draw the target around them (a snapshot, not live).
      api.positions(this.ctx.seesAll ? undefined : this.ctx.me.org_id).then((views) => this.vmap.setPositions(views.map(toPoint))).catch(() => undefined),
    ]);
    this.defaultExpiry();
    form.append(
      h('h1', { id: 'compose-title' }, t('compose.title')),
      this.templatePicker(),
      this.languageTabs(),
      h('div', { class: 'row' }, field(t('compose.severity'), this.severity), field(t('compose.urgency'), this.urgency)),
      h('div', { class: 'row' }, field(t('compose.certainty'), this.certainty), field(t('compose.category'), this.category)),
      h('div', { class: 'row' }, field(t('area.level'), this.level), field(t('compose.expires'), this.expires)),
      h('label', { class: 'inline' }, this.sms, ' ', t('compose.sms')),
      this.picker.element,
      h('div', { class: 'toolbar sticky-bar' },
        button(t('compose.preview'), () => void this.preview(), { 'data-testid': 'alert-preview' }),
        h('button', { type: 'submit', class: 'primary', 'data-testid': 'alert-send' }, t('compose.send'))),
      this.status,
    );
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      void this.send();
    });
    // Whatever areas exist are the first view (East Africa in the demo).
    const shapes = this.picker.features();
    if (shapes.length) this.vmap.fitGeometry({ type: 'GeometryCollection', geometries: shapes.map((f) => f.geometry) }, 0, false);
    return {
      shown: () => this.vmap.map.resize(),
      dispose: () => this.vmap.map.remove(),
    };
  }

  private defaultExpiry(): void {
    const d = new Date(Date.now() + 24 * 3600_000);
    d.setSeconds(0, 0);
    this.expires.value = localInput(d);
  }

  private templatePicker(): HTMLElement {
    const pick = h('select', { 'data-testid': 'alert-template' },
      h('option', { value: '' }, this.templates.length ? t('compose.template_none') : t('compose.template_empty')),
      ...this.templates.map((tpl) => h('option', { value: String(tpl.id) }, tpl.name)));
    pick.disabled = this.templates.length === 0;
    pick.addEventListener('change', () => {
      const tpl = this.templates.find((x) => x.id === Number(pick.value));
      if (tpl) this.applyTemplate(tpl);
    });
    return field(t('compose.template'), pick);
  }

  private applyTemplate(tpl: AlertTemplate): void {
    const c = tpl.content;
    for (const [code, inputs] of this.texts) {
      const tr = c.translations?.[code];
      inputs.title.value = tr?.title ?? '';
      inputs.body.value = tr?.body ?? '';
      inputs.instructions.value = tr?.instructions ?? '';
    }
    if (c.severity) this.severity.value = c.severity;
    if (c.urgency) this.urgency.value = c.urgency;
    if (c.certainty) this.certainty.value = c.certainty;
    if (c.category) this.category.value = c.category;
    this.level.value = c.security_level ? String(c.security_level) : '';
    if (c.sms_fallback !== undefined) this.sms.checked = c.sms_fallback;
    if (c.target) this.picker.set(c.target);
    announce(t('compose.template_applied', { name: tpl.name }));
  }

  /** One panel per language behind a tab list (only one language is required). */
  private languageTabs(): HTMLElement {
    const tabs = h('div', { role: 'tablist', class: 'tabs lang-tabs', 'aria-label': t('compose.languages') });
    const panels: HTMLElement[] = [];
    const buttons: HTMLButtonElement[] = [];
    const choose = (i: number, focus: boolean) => {
      buttons.forEach((b, j) => {
        b.setAttribute('aria-selected', String(i === j));
        b.tabIndex = i === j ? 0 : -1;
      });
      panels.forEach((p, j) => (p.hidden = i !== j));
      if (focus) buttons[i]!.focus();
    };
    ALERT_LANGUAGES.forEach((lang, i) => {
      const panelId = uid('lang');
      const tabId = uid('tab');
      const b = h('button', { type: 'button', role: 'tab', id: tabId, 'aria-controls': panelId, lang: lang.code, 'data-testid': `lang-tab-${lang.code}` }, lang.name);
      b.addEventListener('click', () => choose(i, false));
      b.addEventListener('keydown', (e) => {
        const step = e.key === 'ArrowRight' ? 1 : e.key === 'ArrowLeft' ? -1 : 0;
        if (!step) return;
        const dir = document.documentElement.dir === 'rtl' ? -step : step;
        choose((i + dir + ALERT_LANGUAGES.length) % ALERT_LANGUAGES.length, true);
      });
      buttons.push(b);
      tabs.append(b);
      const common = { lang: lang.code, dir: lang.dir };
      const title = h('input', { type: 'text', maxlength: '200', ...common, 'data-testid': `alert-title-${lang.code}` });
      const body = h('textarea', { rows: '4', maxlength: '5000', ...common, 'data-testid': `alert-body-${lang.code}` });
      const instructions = h('textarea', { rows: '2', maxlength: '2000', ...common, 'data-testid': `alert-instructions-${lang.code}` });
      this.texts.set(lang.code, { title, body, instructions });
      panels.push(h('div', { role: 'tabpanel', id: panelId, 'aria-labelledby': tabId, class: 'lang-panel' },
        field(`${t('compose.alert_title')} (${lang.name})`, title),
        field(`${t('compose.body')} (${lang.name})`, body),
        field(`${t('compose.instructions')} (${lang.name})`, instructions)));
    });
    choose(0, false);
    return h('div', { class: 'lang-box' }, h('p', { class: 'hint' }, t('compose.languages_hint')), tabs, ...panels);
  }

  private targetChanged(): void {
    this.vmap.setTarget(this.picker.features());
    window.clearTimeout(this.previewTimer);
    if (this.picker.isEmpty()) {
      this.previewBox.replaceChildren();
      return;
    }
    this.previewTimer = window.setTimeout(() => void this.preview(), 400);
  }

  /** Counts who the target reaches; a refused target (422) shows its reason. */
  private async preview(): Promise<Preview | null> {
    const run = ++this.previewRun;
    const features = this.picker.features();
    this.vmap.setTarget(features);
    if (features.length) this.vmap.fitGeometry({ type: 'GeometryCollection', geometries: features.map((f) => f.geometry) }, 0);
    this.previewBox.replaceChildren(h('p', {}, t('loading')));
    try {
      const p = await ops.previewAlert(this.picker.value());
      if (run !== this.previewRun) return p;
      this.previewBox.dataset.total = String(p.total);
      const orgName = (id: string) => this.ctx.organisations.find((o) => String(o.id) === id)?.short_name ?? `#${id}`;
      fill(this.previewBox,
        h('h2', {}, p.total === 1 ? t('preview.one') : t('preview.total', { n: p.total })),
        h('dl', { class: 'counts' },
          ...REASONS.filter((r) => p.by_reason[r]).flatMap((r) => [h('dt', {}, t(`reason.${r}` as Key)), h('dd', { 'data-reason': r }, String(p.by_reason[r]))]),
          ...Object.entries(p.by_organisation).flatMap(([id, n]) => [h('dt', {}, orgName(id)), h('dd', {}, String(n))])),
        p.stale_positions ? h('p', { class: 'warning' }, t('preview.stale', { n: p.stale_positions })) : null,
        p.total === 0 ? h('p', { class: 'warning', role: 'alert' }, t('preview.nobody')) : null);
      return p;
    } catch (e) {
      if (run !== this.previewRun) return null;
      delete this.previewBox.dataset.total;
      this.previewBox.replaceChildren(h('p', { class: 'refused', role: 'alert', 'data-testid': 'preview-refused' }, t('preview.refused', { detail: errorText(e) })));
      return null;
    }
  }

  private input(): AlertInput {
    const translations: Record<string, Translation> = {};
    for (const [code, f] of this.texts) {
      const title = f.title.value.trim();
      const body = f.body.value.trim();
      const instructions = f.instructions.value.trim();
      if (!title && !body && !instructions) continue;
      translations[code] = { title, body, ...(instructions ? { instructions } : {}) };
    }
    const input: AlertInput = {
      translations,
      severity: this.severity.value,
      urgency: this.urgency.value,
      certainty: this.certainty.value,
      category: this.category.value,
      sms_fallback: this.sms.checked,
      target: this.picker.value(),
    };
    if (this.level.value) input.security_level = Number(this.level.value);
    if (this.expires.value) input.expires_at = new Date(this.expires.value).toISOString();
    return input;
  }

  private async send(): Promise<void> {
    this.status.textContent = '';
    const input = this.input();
    if (!Object.keys(input.translations).length) {
      this.status.textContent = t('compose.need_text');
      this.texts.get('en')?.title.focus();
      return;
    }
    // Who it reaches now, said before it goes: an alert cannot be unsent, only cancelled.
    const preview = await this.preview();
    if (!preview) return;
    if (preview.total === 0) {
      this.status.textContent = t('preview.nobody');
      return;
    }
    const title = Object.values(input.translations)[0]?.title ?? '';
    const go = await new Promise<boolean>((resolve) => {
      let answer = false;
      const dlg = openDialog(t('compose.confirm_title'), h('p', {}, t('compose.confirm', { n: preview.total, title })), [
        button(t('compose.send'), () => {
          answer = true;
          dlg.close();
        }, { class: 'primary', 'data-testid': 'alert-confirm' }),
        button(t('area.cancel'), () => dlg.close()),
      ]);
      void dlg.closed.then(() => resolve(answer));
    });
    if (!go) return;
    const sendButton = this.container.querySelector<HTMLButtonElement>('[data-testid=alert-send]');
    if (sendButton) sendButton.disabled = true;
    try {
      const alert = await ops.sendAlert(input);
      announce(t('compose.sent', { n: alert.recipient_count }));
      for (const f of this.texts.values()) {
        f.title.value = '';
        f.body.value = '';
        f.instructions.value = '';
      }
      this.picker.set(undefined);
      this.defaultExpiry();
      showAlert(alert.id);
    } catch (e) {
      this.status.textContent = e instanceof ApiError && e.status === 422 ? t('compose.refused', { detail: errorText(e) }) : t('error.generic', { detail: errorText(e) });
      if (!(e instanceof ApiError)) reportError(e);
    } finally {
      if (sendButton) sendButton.disabled = false;
    }
  }
}

function select(values: readonly string[], group: string, chosen: string): HTMLSelectElement {
  return h('select', { 'data-testid': `alert-${group}` }, ...values.map((v) => h('option', { value: v, selected: v === chosen }, t(`cap.${group}.${v}` as Key))));
}

/** A date as a `datetime-local` input's value, in local time. */
function localInput(d: Date): string {
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}
