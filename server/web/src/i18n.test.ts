import { describe, expect, it } from 'vitest';
import { formatAge, isRtl, levelLabel, reasonLabel, t } from './i18n';

describe('translations', () => {
  it('fills placeholders and keeps unknown ones visible', () => {
    expect(t('area.saved', { name: 'Juba' }, 'en')).toBe('Area “Juba” saved');
    expect(t('area.saved', { name: 'Juba' }, 'fr')).toBe('Zone « Juba » enregistrée');
    expect(t('area.saved', {}, 'en')).toBe('Area “{name}” saved');
  });

  it('Arabic alone is right to left', () => {
    expect(isRtl('ar')).toBe(true);
    expect(isRtl('fr')).toBe(false);
    expect(isRtl('en')).toBe(false);
    expect(t('nav.map', {}, 'ar')).toBe('الخريطة');
  });

  it('levels outside 1–6 read as "no level"', () => {
    expect(levelLabel(5)).toMatch(/^5 /);
    expect(levelLabel(0)).toBe(levelLabel(null));
    expect(levelLabel(9)).toBe(levelLabel(null));
  });

  it('ages are short and in the language asked', () => {
    const now = Date.parse('2026-11-22T12:00:00Z');
    expect(formatAge('2026-11-22T11:55:00Z', now, 'en')).toMatch(/5\s?min/);
    expect(formatAge('2026-11-22T09:00:00Z', now, 'fr')).toMatch(/3\s?h/);
    expect(formatAge('2026-11-17T12:00:00Z', now, 'ar')).toMatch(/5/);
    expect(formatAge('2026-11-20T12:00:00Z', now, 'ar')).toBe('يومان');
  });

  it('reasons are named in each language, unknown ones as given', () => {
    expect(reasonLabel('inside_area')).toBe(t('reason.inside_area'));
    expect(t('reason.following_area', {}, 'fr')).toBe('Suit la zone');
    expect(reasonLabel('some_future_reason')).toBe('some_future_reason');
  });
});
