// People and roles (org admins, system admins): the organisation's personnel, role grants,
// activation, adding one person, and importing a roster file.

import { ApiError, ROLES, api, type Person, type Role } from '../api';
import { roleLabel, t } from '../i18n';
import { announce, errorText, field, fill, h, reportError } from '../ui';
import type { ConsoleContext, Screen } from './main';

const ROW_LIMIT = 500;

export const peopleScreen: Screen = {
  id: 'people',
  label: 'nav.people',
  allowed: (me) => me.system_admin || me.roles.includes('org_admin'),
  async create(ctx, container) {
    const screen = new PeopleScreen(ctx, container);
    await screen.load();
    return { shown: () => void screen.load() };
  },
};

class PeopleScreen {
  private orgId: number;
  private people: Person[] = [];
  private filter = '';
  private readonly list = h('div', { class: 'people-table' });

  constructor(private readonly ctx: ConsoleContext, private readonly container: HTMLElement) {
    this.orgId = ctx.me.org_id;
    this.container.replaceChildren(h('div', { class: 'page' },
      h('h1', {}, t('people.title')),
      this.orgPicker(),
      h('div', { class: 'columns' },
        h('div', { class: 'column-main' }, this.filterBox(), this.list),
        h('div', { class: 'column-side' }, this.addForm(), this.rosterForm()))));
  }

  async load(): Promise<void> {
    try {
      this.people = await api.users(this.orgId);
      this.render();
    } catch (e) {
      reportError(e);
    }
  }

  private orgPicker(): Node | null {
    if (!this.ctx.me.system_admin || this.ctx.organisations.length < 2) return null;
    const select = h('select', {}, ...this.ctx.organisations.map((o) => h('option', { value: String(o.id), selected: o.id === this.orgId }, `${o.name} (${o.short_name})`)));
    select.addEventListener('change', () => {
      this.orgId = Number(select.value);
      void this.load();
    });
    return field(t('people.org'), select);
  }

  private filterBox(): Node {
    const input = h('input', { type: 'search' });
    input.addEventListener('input', () => {
      this.filter = input.value.trim().toLowerCase();
      this.render();
    });
    return field(t('panel.filter'), input);
  }

  private grantable(role: Role, person: Person): boolean {
    const me = this.ctx.me;
    if (me.system_admin) return true;
    const privileged = person.system_admin || person.roles.includes('oversight');
    return role !== 'oversight' && !privileged;
  }

  private render(): void {
    const shown = this.people
      .filter((p) => !this.filter || `${p.name} ${p.email}`.toLowerCase().includes(this.filter))
      .sort((a, b) => a.name.localeCompare(b.name));
    const rows = shown.slice(0, ROW_LIMIT).map((p) => {
      const roleBoxes = ROLES.map((role) => {
        const box = h('input', { type: 'checkbox', checked: p.roles.includes(role), disabled: !this.grantable(role, p), 'aria-label': `${roleLabel(role)} — ${p.name}`, 'data-role': role });
        box.addEventListener('change', () => void this.setRole(p, role, box));
        return h('td', { class: 'check' }, box);
      });
      const active = h('input', { type: 'checkbox', checked: p.active, disabled: !this.grantable('staff', p), 'aria-label': `${t('people.active')} — ${p.name}` });
      active.addEventListener('change', () => void this.setActive(p, active));
      return h('tr', { 'data-user-id': p.id },
        h('th', { scope: 'row' }, p.name),
        h('td', {}, p.email),
        ...roleBoxes,
        h('td', { class: 'check' }, active),
        h('td', {}, t(p.location_mode === 'location_less' ? 'mode.short.location_less' : 'mode.short.tracking')));
    });
    this.list.replaceChildren(
      h('p', { class: 'count' }, t('panel.count', { n: `${rows.length} / ${this.people.length}` })),
      h('table', { 'data-testid': 'people-table' },
        h('caption', { class: 'visually-hidden' }, t('people.title')),
        h('thead', {}, h('tr', {},
          h('th', { scope: 'col' }, t('people.name')),
          h('th', { scope: 'col' }, t('people.email')),
          ...ROLES.map((r) => h('th', { scope: 'col' }, roleLabel(r))),
          h('th', { scope: 'col' }, t('people.active')),
          h('th', { scope: 'col' }, t('people.mode')))),
        h('tbody', {}, ...rows)));
  }

  private async setRole(p: Person, role: Role, box: HTMLInputElement): Promise<void> {
    box.disabled = true;
    try {
      if (box.checked) await api.grantRole(p.id, role);
      else await api.revokeRole(p.id, role);
      p.roles = box.checked ? [...p.roles, role] : p.roles.filter((r) => r !== role);
      announce(t('people.role_changed', { name: p.name }));
    } catch (e) {
      box.checked = !box.checked;
      reportError(e);
    } finally {
      box.disabled = false;
    }
  }

  private async setActive(p: Person, box: HTMLInputElement): Promise<void> {
    try {
      await api.updateUser(p.id, { active: box.checked });
      p.active = box.checked;
      announce(t('people.activation_changed', { name: p.name }));
    } catch (e) {
      box.checked = !box.checked;
      reportError(e);
    }
  }

  private addForm(): Node {
    const email = h('input', { type: 'email', required: true, autocomplete: 'off' });
    const name = h('input', { type: 'text', required: true, autocomplete: 'off' });
    const password = h('input', { type: 'password', autocomplete: 'new-password', minlength: '12' });
    const roleBoxes = ROLES.filter((r) => r !== 'oversight' || this.ctx.me.system_admin).map((role) => {
      const box = h('input', { type: 'checkbox', value: role, checked: role === 'staff' });
      return { role, box, label: h('label', { class: 'inline' }, box, ' ', roleLabel(role)) };
    });
    const status = h('p', { class: 'form-status', role: 'alert' });
    const form = h('form', { class: 'card', 'aria-labelledby': 'add-person' },
      h('h2', { id: 'add-person' }, t('people.add')),
      field(t('people.email'), email),
      field(t('people.name'), name),
      h('fieldset', {}, h('legend', {}, t('people.roles')), ...roleBoxes.map((r) => r.label)),
      field(t('people.password_optional'), password),
      h('button', { type: 'submit', class: 'primary' }, t('people.add')),
      status);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      status.textContent = '';
      try {
        const created = await api.createUser(this.orgId, {
          email: email.value.trim(),
          name: name.value.trim(),
          roles: roleBoxes.filter((r) => r.box.checked).map((r) => r.role),
          ...(password.value ? { password: password.value } : {}),
        });
        announce(t('people.created', { name: created.name }));
        form.reset();
        await this.load();
      } catch (err) {
        status.textContent = t('error.generic', { detail: errorText(err) });
      }
    });
    return form;
  }

  private rosterForm(): Node {
    const file = h('input', { type: 'file', accept: '.csv,.json,text/csv,application/json', required: true });
    const dryRun = h('input', { type: 'checkbox', checked: true });
    const deactivate = h('input', { type: 'checkbox' });
    const report = h('div', { class: 'form-status', role: 'status', 'data-testid': 'roster-report' });
    const form = h('form', { class: 'card', 'aria-labelledby': 'roster-title' },
      h('h2', { id: 'roster-title' }, t('roster.title')),
      field(t('roster.file'), file),
      h('label', { class: 'inline' }, dryRun, ' ', t('roster.dry_run')),
      h('label', { class: 'inline' }, deactivate, ' ', t('roster.deactivate_missing')),
      h('button', { type: 'submit', class: 'primary' }, t('roster.submit')),
      report);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const f = file.files?.[0];
      if (!f) return;
      report.replaceChildren(t('loading'));
      try {
        const csv = !/\.json$/i.test(f.name);
        const r = await api.importRoster(this.orgId, await f.text(), csv, dryRun.checked, deactivate.checked);
        report.replaceChildren((r.dry_run ? t('roster.dry_report') : '') + t('roster.report', { rows: r.rows, created: r.created, updated: r.updated, unchanged: r.unchanged, deactivated: r.deactivated }));
        if (!r.dry_run) await this.load();
      } catch (err) {
        const issues = err instanceof ApiError ? err.issues : [];
        fill(report,
          h('p', {}, t('error.generic', { detail: err instanceof ApiError ? err.detail : errorText(err) })),
          issues.length ? h('ul', {}, ...issues.slice(0, 50).map((i) => h('li', {}, `${i.at}: ${i.reason}`))) : null);
      }
    });
    return form;
  }
}
