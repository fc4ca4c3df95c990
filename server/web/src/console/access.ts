// The location-access log: everyone who saw the signed-in person's position, and for org admins
// the organisation's audit log.

import { api } from '../api';
import { formatTime, t } from '../i18n';
import { fill, h, reportError, table } from '../ui';
import { isOperations, type Screen } from './main';

export const accessScreen: Screen = {
  id: 'access',
  label: 'nav.access',
  allowed: isOperations,
  async create(ctx, container) {
    const page = h('div', { class: 'page' });
    container.replaceChildren(page);
    const load = async () => {
      try {
        const canAudit = ctx.me.system_admin || ctx.me.roles.includes('org_admin');
        const [entries, audit] = await Promise.all([api.accessLog(), canAudit ? api.audit(ctx.me.org_id) : Promise.resolve([])]);
        fill(page,
          h('h1', {}, t('access.title')),
          h('p', {}, t('access.explain')),
          entries.length
            ? table(t('access.title'), [t('access.when'), t('access.viewer'), t('access.purpose')],
              entries.map((e) => [formatTime(e.at), e.viewer_name, e.purpose]), { 'data-testid': 'access-table' })
            : h('p', { 'data-testid': 'access-empty' }, t('access.empty')),
          canAudit
            ? h('section', { 'aria-labelledby': 'audit-title' },
              h('h2', { id: 'audit-title' }, t('audit.title')),
              table(t('audit.title'), [t('audit.when'), t('audit.action'), t('audit.target'), t('audit.detail')],
                audit.map((a) => [formatTime(a.at), a.action, a.target, a.detail]), { 'data-testid': 'audit-table', class: 'compact' }))
            : null);
      } catch (e) {
        reportError(e);
      }
    };
    await load();
    return { shown: () => void load() };
  },
};
