// Who an alert or a roll-call reaches: stored areas, shapes drawn on a map for this message,
// organisations, roles, duty stations, everyone, and how fresh a position must be to count as
// "inside". The parts combine as a union (alerts/target.rs on the server).

import type { Feature } from 'geojson';
import { ROLES, api, ops, type AreaFeature, type DutyStation, type Role, type Target } from '../api';
import { kindLabel, levelLabel, roleLabel, t } from '../i18n';
import type { VigilMap } from '../map';
import { button, field, h, openDialog, uid } from '../ui';
import type { ConsoleContext } from './main';

/** Freshness limits offered, in seconds (0: the server's default). */
const FRESHNESS = [0, 900, 3600, 6 * 3600, 24 * 3600, 7 * 86400];
/** Stored areas listed at once; the filter finds the rest. */
const AREA_LIMIT = 60;

export class TargetPicker {
  readonly element = h('fieldset', { class: 'target-picker', 'data-testid': 'target' });
  private areas: AreaFeature[] = [];
  private stations: DutyStation[] = [];
  private readonly chosenAreas = new Set<number>();
  private readonly orgs = new Set<number>();
  private readonly roles = new Set<Role>();
  private readonly chosenStations = new Set<number>();
  private everyone = false;
  private fresh = 0;
  /** Shapes drawn for this message (GeoJSON: Polygon, or Point with properties.radius_m). */
  private shapes: Feature[] = [];
  private areaFilter = '';
  private readonly areaList = h('ul', { class: 'check-list compact-list', 'data-testid': 'target-areas' });
  private readonly shapeList = h('ul', { class: 'plain-list', 'data-testid': 'target-shapes' });
  private readonly listeners: Array<() => void> = [];
  private drawing: AbortController | null = null;

  constructor(private readonly ctx: ConsoleContext, private readonly map: VigilMap | null, private readonly drawBar: HTMLElement | null = null) {}

  async load(): Promise<void> {
    const [fc, stations] = await Promise.all([api.areas(), ops.dutyStations().catch(() => [] as DutyStation[])]);
    this.areas = (fc.features as AreaFeature[]).sort((a, b) => a.properties.name.localeCompare(b.properties.name));
    this.stations = stations.sort((a, b) => a.name.localeCompare(b.name));
    this.render();
  }

  /** Called after every change of the target. */
  onChange(listener: () => void): void {
    this.listeners.push(listener);
  }

  private changed(): void {
    this.listeners.forEach((l) => l());
  }

  value(): Target {
    const target: Target = {};
    if (this.chosenAreas.size) target.areas = [...this.chosenAreas];
    if (this.shapes.length) target.shapes = this.shapes;
    if (this.orgs.size) target.organisations = [...this.orgs];
    if (this.roles.size) target.roles = [...this.roles];
    if (this.chosenStations.size) target.duty_stations = [...this.chosenStations];
    if (this.everyone) target.everyone = true;
    if (this.fresh) target.fresh_within_secs = this.fresh;
    return target;
  }

  isEmpty(): boolean {
    const v = this.value();
    return !v.areas && !v.shapes && !v.organisations && !v.roles && !v.duty_stations && !v.everyone;
  }

  /** Fills the picker from a template's target. */
  set(target: Target | undefined): void {
    this.chosenAreas.clear();
    this.orgs.clear();
    this.roles.clear();
    this.chosenStations.clear();
    target?.areas?.forEach((a) => this.chosenAreas.add(a));
    target?.organisations?.forEach((o) => this.orgs.add(o));
    target?.roles?.forEach((r) => this.roles.add(r));
    target?.duty_stations?.forEach((d) => this.chosenStations.add(d));
    this.shapes = [...(target?.shapes ?? [])];
    this.everyone = !!target?.everyone;
    this.fresh = target?.fresh_within_secs ?? 0;
    this.render();
    this.changed();
  }

  /** What to highlight on the map: the chosen stored areas and the drawn shapes. */
  features(): Feature[] {
    const stored = this.areas.filter((a) => this.chosenAreas.has(a.id)).map((a) => ({ type: 'Feature', geometry: a.geometry, properties: { radius_m: a.properties.radius_m } }) as Feature);
    return [...stored, ...this.shapes];
  }

  private render(): void {
    const legend = h('legend', {}, t('target.title'));
    const parts: Node[] = [legend, h('p', { class: 'hint' }, t('target.explain'))];
    if (this.map) parts.push(this.shapeTools());
    parts.push(this.areaSection(), this.checkGroup(t('target.organisations'), this.ctx.organisations.map((o) => [o.id, `${o.name} (${o.short_name})`]), this.orgs, 'org'));
    parts.push(this.checkGroup(t('target.roles'), ROLES.map((r) => [r, roleLabel(r)]), this.roles as Set<string>, 'role'));
    if (this.stations.length) parts.push(this.checkGroup(t('target.duty_stations'), this.stations.map((s) => [s.id, `${s.name} (${s.country_code})`]), this.chosenStations, 'station'));
    const everyone = h('input', { type: 'checkbox', checked: this.everyone, 'data-testid': 'target-everyone' });
    everyone.addEventListener('change', () => {
      this.everyone = everyone.checked;
      this.changed();
    });
    parts.push(h('label', { class: 'inline' }, everyone, ' ', t('target.everyone')));
    const fresh = h('select', { 'data-testid': 'target-fresh' }, ...FRESHNESS.map((s) => h('option', { value: String(s), selected: s === this.fresh }, s ? freshLabel(s) : t('target.fresh_default'))));
    fresh.id = uid();
    fresh.addEventListener('change', () => {
      this.fresh = Number(fresh.value);
      this.changed();
    });
    parts.push(h('div', { class: 'field' }, h('label', { for: fresh.id }, t('target.fresh')), fresh));
    this.element.replaceChildren(...parts);
  }

  private checkGroup<K extends string | number>(title: string, items: Array<[K, string]>, set: Set<K>, testid: string): HTMLElement {
    const boxes = items.map(([value, label]) => {
      const box = h('input', { type: 'checkbox', checked: set.has(value), 'data-testid': `target-${testid}-${value}` });
      box.addEventListener('change', () => {
        if (box.checked) set.add(value);
        else set.delete(value);
        this.changed();
      });
      return h('label', { class: 'inline' }, box, ' ', label);
    });
    return h('details', { class: 'target-group', open: set.size > 0 }, h('summary', {}, title, set.size ? ` (${set.size})` : ''), ...boxes);
  }

  private areaSection(): HTMLElement {
    const search = h('input', { type: 'search', value: this.areaFilter, 'aria-label': `${t('target.areas')} — ${t('panel.filter')}`, placeholder: t('panel.filter') });
    search.addEventListener('input', () => {
      this.areaFilter = search.value.trim().toLowerCase();
      this.drawAreaList();
    });
    this.drawAreaList();
    return h('details', { class: 'target-group', open: true }, h('summary', {}, t('target.areas')), search, this.areaList);
  }

  private drawAreaList(): void {
    const shown = this.areas
      .filter((a) => this.chosenAreas.has(a.id) || !this.areaFilter || a.properties.name.toLowerCase().includes(this.areaFilter))
      .sort((a, b) => Number(this.chosenAreas.has(b.id)) - Number(this.chosenAreas.has(a.id)))
      .slice(0, AREA_LIMIT);
    this.areaList.replaceChildren(...shown.map((a) => {
      const box = h('input', { type: 'checkbox', checked: this.chosenAreas.has(a.id), 'data-area-id': a.id });
      box.addEventListener('change', () => {
        if (box.checked) this.chosenAreas.add(a.id);
        else this.chosenAreas.delete(a.id);
        this.changed();
      });
      return h('li', {}, h('label', {}, box, h('span', {}, a.properties.name, h('small', {}, `${kindLabel(a.properties.kind)} · ${levelLabel(a.properties.security_level)}`))));
    }));
  }

  private shapeTools(): HTMLElement {
    this.drawShapeList();
    return h('div', { class: 'target-group' },
      h('p', { class: 'group-title' }, t('target.shapes')),
      h('div', { class: 'toolbar', role: 'toolbar', 'aria-label': t('target.shapes') },
        button(t('area.draw_polygon'), () => void this.draw('polygon'), { 'data-testid': 'target-draw-polygon' }),
        button(t('area.draw_circle'), () => void this.draw('circle'), { 'data-testid': 'target-draw-circle' }),
        button(t('area.circle_by_coords'), () => this.circleByCoordinates(), { 'data-testid': 'target-circle-coords' })),
      this.shapeList);
  }

  private drawShapeList(): void {
    this.shapeList.replaceChildren(...this.shapes.map((s, i) => {
      const r = (s.properties as { radius_m?: number } | null)?.radius_m;
      const label = r ? t('target.circle', { km: (r / 1000).toFixed(1) }) : t('target.polygon', { n: i + 1 });
      return h('li', {}, h('span', {}, label), button(t('target.remove'), () => {
        this.shapes.splice(i, 1);
        this.drawShapeList();
        this.changed();
      }, { class: 'small', 'aria-label': `${t('target.remove')} — ${label}` }));
    }));
  }

  /** A circle typed in (centre and radius): the keyboard's way to draw one. */
  private circleByCoordinates(): void {
    const lat = h('input', { type: 'number', step: 'any', min: '-90', max: '90', required: true, 'data-testid': 'target-lat' });
    const lon = h('input', { type: 'number', step: 'any', min: '-180', max: '180', required: true, 'data-testid': 'target-lon' });
    const km = h('input', { type: 'number', step: 'any', min: '0.05', max: '500', value: '1', required: true, 'data-testid': 'target-km' });
    const form = h('form', { class: 'dialog-body' }, field(t('area.lat'), lat), field(t('area.lon'), lon), field(t('area.radius_km'), km),
      h('button', { type: 'submit', class: 'primary', 'data-testid': 'target-circle-add' }, t('target.add_circle')));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      if (!form.reportValidity()) return;
      this.shapes.push({ type: 'Feature', geometry: { type: 'Point', coordinates: [Number(lon.value), Number(lat.value)] }, properties: { radius_m: Math.round(Number(km.value) * 1000) } });
      dlg.close();
      this.drawShapeList();
      this.changed();
    });
    const dlg = openDialog(t('area.circle_by_coords'), form);
    lat.focus();
  }

  /** Lets the person draw a shape on the map for this message only. */
  private async draw(kind: 'polygon' | 'circle'): Promise<void> {
    if (!this.map) return;
    this.drawing?.abort();
    const controller = new AbortController();
    this.drawing = controller;
    const onKey = (e: KeyboardEvent) => {
      if (e.key === 'Escape') controller.abort();
    };
    document.addEventListener('keydown', onKey);
    if (this.drawBar) {
      this.drawBar.hidden = false;
      this.drawBar.replaceChildren(h('p', {}, t(kind === 'polygon' ? 'area.drawing_hint' : 'area.circle_hint')), button(t('area.cancel'), () => controller.abort()));
    }
    try {
      const shape = await this.map.drawShape(kind, controller.signal);
      if (!shape) return;
      this.shapes.push(shape.kind === 'circle'
        ? { type: 'Feature', geometry: { type: 'Point', coordinates: shape.center }, properties: { radius_m: shape.radiusM } }
        : { type: 'Feature', geometry: shape.geometry, properties: {} });
      this.drawShapeList();
      this.changed();
    } finally {
      document.removeEventListener('keydown', onKey);
      if (this.drawBar) this.drawBar.hidden = true;
      if (this.drawing === controller) this.drawing = null;
    }
  }
}

function freshLabel(secs: number): string {
  return secs < 3600 ? t('target.fresh_min', { n: secs / 60 }) : secs < 86400 ? t('target.fresh_h', { n: secs / 3600 }) : t('target.fresh_d', { n: secs / 86400 });
}

/** The reasons a preview counts people by, in the order shown. */
export const REASONS = ['inside_area', 'following_area', 'organisation', 'role', 'duty_station', 'everyone'] as const;

