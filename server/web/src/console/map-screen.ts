// The map screen: security areas (list, draw, edit, import, export), personnel and assets with
// their live positions. The side panel gives keyboard access to everything on the map.

import type { Feature, FeatureCollection, Geometry, Point, Polygon } from 'geojson';
import { api, type AreaFeature, type AreaProps, type Asset, type PositionView } from '../api';
import { LEVEL_COLOURS, exportCollection, featuresFromImport, levelColour, positionKey, type PositionPoint } from '../geo';
import { formatAge, formatTime, kindLabel, levelLabel, t } from '../i18n';
import { VigilMap, type DrawnShape } from '../map';
import { announce, button, download, errorText, field, h, openDialog, reportError, uid } from '../ui';
import type { LiveEvent } from '../ws';
import { isOperations, type ConsoleContext, type Screen } from './main';

const AREA_KINDS = ['security_area', 'duty_station', 'premises', 'assembly_point', 'ad_hoc', 'country'];
/** Rows drawn in a side-panel list; a filter narrows the rest. */
const LIST_LIMIT = 200;

type Tab = 'areas' | 'people' | 'assets';

export const mapScreen: Screen = {
  id: 'map',
  label: 'nav.map',
  allowed: isOperations,
  async create(ctx, container) {
    return new MapScreen(ctx, container).start();
  },
};

class MapScreen {
  private vmap!: VigilMap;
  private areas: AreaFeature[] = [];
  private assets: Asset[] = [];
  private loading: Promise<void> | null = null;
  private loadAgain = false;
  private selected: number | null = null;
  private tab: Tab = 'areas';
  private filter = '';
  private readonly panelBody = h('div', { class: 'panel-body' });
  private readonly tabs = h('div', { role: 'tablist', class: 'tabs', 'aria-label': t('nav.map') });
  private readonly drawBar = h('div', { class: 'draw-bar', role: 'region', 'aria-live': 'polite', hidden: true });
  private drawing: AbortController | null = null;
  private listTimer: number | undefined;
  private reloadTimer: number | undefined;
  private readonly unlisten: Array<() => void> = [];
  private readonly canDraw: boolean;

  constructor(private readonly ctx: ConsoleContext, private readonly container: HTMLElement) {
    this.canDraw = ctx.me.system_admin || ctx.me.roles.includes('adviser');
  }

  async start() {
    const mapEl = h('div', { class: 'map', 'data-testid': 'map' });
    const legend = h('div', { class: 'legend', role: 'group', 'aria-label': t('level.legend') },
      h('strong', {}, t('level.legend')),
      h('ul', {}, ...Object.keys(LEVEL_COLOURS).map((l) => h('li', {}, h('span', { class: 'swatch', style: `background:${levelColour(Number(l))}` }), levelLabel(Number(l))))));
    this.container.replaceChildren(
      h('aside', { class: 'panel', 'aria-label': t('panel.areas') }, this.tabs, this.panelBody),
      h('div', { class: 'map-wrap' }, mapEl, this.drawBar, legend),
    );
    this.vmap = await VigilMap.create(mapEl, this.ctx.config);
    this.vmap.onAreaClick((id) => this.selectArea(id, false));
    this.vmap.onPointClick((key) => this.showPoint(key));
    this.renderTabs();
    // Subscribe before loading, so that nothing falls between the picture and the live feed.
    const socket = this.ctx.socket;
    this.unlisten.push(socket.onEvent((e) => this.onEvent(e)));
    // Events are live only: after a reconnect, reload the picture (PROTOCOL.md).
    this.unlisten.push(socket.onWelcome(() => void this.loadPositions()));
    socket.subscribe('positions', this.ctx.seesAll ? {} : { org_id: this.ctx.me.org_id });
    await Promise.all([this.loadAreas(), this.loadPositions(), this.loadAssets()]);
    this.fitToAreas();
    const synthetic = Number(new URLSearchParams(location.search).get('synthetic') ?? 0);
    if (synthetic > 0) this.vmap.addSynthetic(Math.min(synthetic, 200_000));
    this.renderPanel();
    return {
      shown: () => this.vmap.map.resize(),
      dispose: () => {
        this.unlisten.forEach((u) => u());
        this.vmap.map.remove();
      },
    };
  }

  /** The first view: every area of the deployment. */
  private fitToAreas(): void {
    const shapes = this.areas.map((a) => a.geometry);
    if (shapes.length) this.vmap.fitGeometry({ type: 'GeometryCollection', geometries: shapes }, 0, false);
  }

  // ---- data ----

  private async loadAreas(): Promise<void> {
    const fc = await api.areas();
    this.areas = fc.features as AreaFeature[];
    this.vmap.setAreas(fc);
    this.renderPanelSoon();
  }

  /** Reloads every position; calls while one is running make one more afterwards, not many. */
  private loadPositions(): Promise<void> {
    if (this.loading) {
      this.loadAgain = true;
      return this.loading;
    }
    this.loading = (async () => {
      do {
        this.loadAgain = false;
        try {
          const views = await api.positions(this.ctx.seesAll ? undefined : this.ctx.me.org_id);
          this.vmap.setPositions(views.map(toPoint));
          this.renderPanelSoon();
        } catch (e) {
          reportError(e);
        }
      } while (this.loadAgain);
      this.loading = null;
    })();
    return this.loading;
  }

  private async loadAssets(): Promise<void> {
    const orgs = this.ctx.seesAll ? this.ctx.organisations.map((o) => o.id) : [this.ctx.me.org_id];
    const lists = await Promise.all(orgs.map((id) => api.assets(id).catch(() => [] as Asset[])));
    this.assets = lists.flat();
  }

  private onEvent(e: LiveEvent): void {
    if (e.id === undefined) return;
    const subject = e.subject === 'asset' ? 'asset' : 'user';
    const key = positionKey(subject, e.id);
    const known = this.vmap.position(key);
    if (e.event === 'geofence' && known && typeof e.area_id === 'number') {
      const inside = new Set(known.area_ids ?? []);
      if (e.transition === 'entered') inside.add(e.area_id);
      else inside.delete(e.area_id);
      known.area_ids = [...inside];
      return;
    }
    if (e.event !== 'position' || e.lat === undefined || e.lon === undefined) return;
    this.vmap.upsertPosition({
      key,
      subject,
      id: e.id,
      name: known?.name ?? `#${e.id}`,
      lat: e.lat,
      lon: e.lon,
      accuracy_m: e.accuracy_m ?? null,
      recorded_at: e.recorded_at ?? new Date().toISOString(),
      area_ids: known?.area_ids,
    });
    // Someone new: their name comes with the next full picture.
    if (!known) {
      window.clearTimeout(this.reloadTimer);
      this.reloadTimer = window.setTimeout(() => void this.loadPositions(), 3000);
    }
    if (this.tab !== 'areas') this.renderPanelSoon();
  }

  // ---- panel ----

  private renderTabs(): void {
    const tabs: Array<[Tab, string]> = [['areas', t('panel.areas')], ['people', t('panel.people')], ['assets', t('panel.assets')]];
    this.tabs.replaceChildren(...tabs.map(([id, label]) => {
      const b = h('button', { type: 'button', role: 'tab', id: `tab-${id}`, 'aria-selected': String(this.tab === id), 'aria-controls': 'panel-body', tabindex: this.tab === id ? '0' : '-1' }, label);
      b.addEventListener('click', () => {
        this.tab = id;
        this.filter = '';
        this.renderTabs();
        this.renderPanel();
      });
      b.addEventListener('keydown', (ev) => {
        const i = tabs.findIndex(([x]) => x === id);
        const step = ev.key === 'ArrowRight' ? 1 : ev.key === 'ArrowLeft' ? -1 : 0;
        if (!step) return;
        const dir = document.documentElement.dir === 'rtl' ? -step : step;
        this.tab = tabs[(i + dir + tabs.length) % tabs.length]![0];
        this.renderTabs();
        this.renderPanel();
        (this.tabs.querySelector('[aria-selected="true"]') as HTMLElement | null)?.focus();
      });
      return b;
    }));
    this.panelBody.id = 'panel-body';
    this.panelBody.setAttribute('role', 'tabpanel');
    this.panelBody.setAttribute('aria-labelledby', `tab-${this.tab}`);
  }

  private renderPanelSoon(): void {
    this.listTimer ??= window.setTimeout(() => {
      this.listTimer = undefined;
      this.renderPanel();
    }, 500);
  }

  private renderPanel(): void {
    const active = document.activeElement;
    const keepFilterFocus = active instanceof HTMLInputElement && active.classList.contains('filter');
    const filterInput = h('input', { type: 'search', class: 'filter', value: this.filter, 'data-testid': 'filter' });
    filterInput.addEventListener('input', () => {
      this.filter = filterInput.value;
      this.renderPanel();
    });
    const parts: Node[] = [];
    if (this.tab === 'areas') parts.push(...this.areaTools());
    parts.push(field(t('panel.filter'), filterInput));
    if (this.tab === 'areas') parts.push(...this.areaList());
    else if (this.tab === 'people') parts.push(...this.peopleList());
    else parts.push(...this.assetList());
    this.panelBody.replaceChildren(...parts);
    if (keepFilterFocus) {
      filterInput.focus();
      filterInput.setSelectionRange(filterInput.value.length, filterInput.value.length);
    }
  }

  private matches(text: string): boolean {
    return !this.filter || text.toLowerCase().includes(this.filter.trim().toLowerCase());
  }

  private areaTools(): Node[] {
    if (!this.canDraw) return [h('div', { class: 'toolbar' }, button(t('area.export'), () => void this.exportAreas()))];
    const fileInput = h('input', { type: 'file', accept: '.geojson,.json,application/geo+json,application/json', class: 'visually-hidden', tabindex: '-1', 'aria-hidden': 'true', 'data-testid': 'import-file' });
    fileInput.addEventListener('change', () => {
      const file = fileInput.files?.[0];
      if (file) void this.importAreas(file);
      fileInput.value = '';
    });
    return [h('div', { class: 'toolbar', role: 'toolbar', 'aria-label': t('area.new') },
      button(t('area.draw_polygon'), () => void this.drawArea('polygon')),
      button(t('area.draw_circle'), () => void this.drawArea('circle')),
      button(t('area.circle_by_coords'), () => void this.editArea(null, null)),
      button(t('area.import'), () => fileInput.click()),
      button(t('area.export'), () => void this.exportAreas()),
      fileInput,
    )];
  }

  private areaList(): Node[] {
    const shown = this.areas.filter((a) => this.matches(`${a.properties.name} ${kindLabel(a.properties.kind)}`));
    const items = shown.slice(0, LIST_LIMIT).map((a) => {
      const b = h('button', { type: 'button', class: 'item', 'data-area-id': a.id, 'aria-pressed': String(this.selected === a.id) },
        h('span', { class: 'swatch', style: `background:${levelColour(a.properties.security_level)}`, 'aria-hidden': 'true' }),
        h('span', { class: 'item-name' }, a.properties.name),
        h('span', { class: 'item-meta' }, `${kindLabel(a.properties.kind)} · ${levelLabel(a.properties.security_level)}`));
      b.addEventListener('click', () => this.selectArea(a.id, true));
      return h('li', {}, b);
    });
    const details = this.selected === null ? null : this.areaDetails(this.selected);
    return [
      ...(details ? [details] : []),
      h('p', { class: 'count', 'aria-live': 'polite' }, t('panel.count', { n: `${items.length} / ${this.areas.length}` })),
      h('ul', { class: 'list', 'data-testid': 'area-list', 'aria-label': t('panel.areas') }, ...items),
    ];
  }

  private areaDetails(id: number): HTMLElement | null {
    const a = this.areas.find((x) => x.id === id);
    if (!a) return null;
    const p = a.properties;
    const editable = this.canEdit(a);
    const rows: Array<[string, string]> = [
      [t('area.kind'), kindLabel(p.kind)],
      [t('area.level'), levelLabel(p.security_level)],
      ...(p.radius_m ? [[t('area.radius_km'), (p.radius_m / 1000).toFixed(1)] as [string, string]] : []),
      ...(p.advisory ? [[t('area.advisory'), p.advisory] as [string, string]] : []),
      ...(p.valid_from ? [[t('area.valid_from'), formatTime(p.valid_from)] as [string, string]] : []),
      ...(p.valid_until ? [[t('area.valid_until'), formatTime(p.valid_until)] as [string, string]] : []),
    ];
    return h('section', { class: 'details', 'aria-label': p.name, 'data-testid': 'area-details' },
      h('h3', {}, p.name, p.org_id === null ? h('small', {}, ` (${t('area.shared')})`) : null),
      h('dl', {}, ...rows.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
      h('div', { class: 'toolbar' },
        button(t('area.zoom'), () => this.vmap.fitGeometry(a.geometry, p.radius_m ?? 0)),
        editable ? button(t('area.edit'), () => void this.editArea(a, null)) : null,
        editable && a.geometry.type === 'Polygon' ? button(t('area.edit_shape'), () => this.reshapeArea(a)) : null,
        editable ? button(t('area.delete'), () => void this.deleteArea(a), { class: 'danger' }) : null,
      ));
  }

  private canEdit(a: AreaFeature): boolean {
    return this.ctx.me.system_admin || (this.ctx.me.roles.includes('adviser') && a.properties.org_id === this.ctx.me.org_id);
  }

  private selectArea(id: number, fit: boolean): void {
    this.selected = id;
    this.vmap.selectArea(id);
    const a = this.areas.find((x) => x.id === id);
    if (a && fit) this.vmap.fitGeometry(a.geometry, a.properties.radius_m ?? 0);
    if (this.tab !== 'areas') {
      this.tab = 'areas';
      this.filter = '';
      this.renderTabs();
    }
    this.renderPanel();
  }

  private points(subject: 'user' | 'asset'): PositionPoint[] {
    const out: PositionPoint[] = [];
    for (const p of this.vmap.allPositions()) if (p.subject === subject && this.matches(p.name)) out.push(p);
    return out;
  }

  private peopleList(): Node[] {
    const people = this.points('user');
    const total = this.vmap.positionCount();
    const items = people.slice(0, LIST_LIMIT).sort((a, b) => a.name.localeCompare(b.name)).map((p) => {
      const b = h('button', { type: 'button', class: 'item', 'data-key': p.key },
        h('span', { class: 'dot', 'aria-hidden': 'true' }),
        h('span', { class: 'item-name' }, p.name),
        h('span', { class: 'item-meta' }, t('person.ago', { t: formatAge(p.recorded_at) })));
      b.addEventListener('click', () => this.showPoint(p.key, true));
      return h('li', {}, b);
    });
    return [
      h('p', { class: 'count', 'data-testid': 'people-count' }, t('panel.count', { n: `${items.length} / ${total}` })),
      h('ul', { class: 'list', 'data-testid': 'people-list', 'aria-label': t('panel.people') }, ...items),
    ];
  }

  private assetList(): Node[] {
    const items = this.assets.filter((a) => this.matches(`${a.name} ${a.kind} ${a.identifier ?? ''}`)).slice(0, LIST_LIMIT).map((a) => {
      const key = positionKey('asset', a.id);
      const pos = this.vmap.position(key);
      const b = h('button', { type: 'button', class: 'item', 'data-key': key, disabled: !pos },
        h('span', { class: 'dot asset', 'aria-hidden': 'true' }),
        h('span', { class: 'item-name' }, a.name),
        h('span', { class: 'item-meta' }, `${a.kind}${a.identifier ? ` · ${a.identifier}` : ''}${pos ? ` · ${t('person.ago', { t: formatAge(pos.recorded_at) })}` : ''}`));
      b.addEventListener('click', () => this.showPoint(key, true));
      return h('li', {}, b);
    });
    return [h('ul', { class: 'list', 'data-testid': 'asset-list', 'aria-label': t('panel.assets') }, ...items)];
  }

  private showPoint(key: string, fly = false): void {
    const p = this.vmap.position(key);
    if (!p) return;
    if (fly) this.vmap.map.flyTo({ center: [p.lon, p.lat], zoom: Math.max(this.vmap.map.getZoom(), 11), duration: 600 });
    const inside = new Set(p.area_ids ?? []);
    const areaNames = this.areas.filter((a) => inside.has(a.id)).map((a) => a.properties.name);
    this.vmap.showPopup([p.lon, p.lat], h('div', { class: 'popup', 'data-testid': 'point-popup' },
      h('h3', {}, p.name),
      h('p', {}, `${t('person.position')}: ${formatTime(p.recorded_at)} (${t('person.ago', { t: formatAge(p.recorded_at) })})`),
      p.accuracy_m ? h('p', {}, t('person.accuracy', { m: Math.round(p.accuracy_m) })) : null,
      h('p', {}, `${p.lat.toFixed(5)}, ${p.lon.toFixed(5)}`),
      areaNames.length ? h('p', {}, areaNames.join(', ')) : null));
  }

  // ---- drawing and editing ----

  private async drawArea(kind: 'polygon' | 'circle'): Promise<void> {
    this.drawing?.abort();
    const abort = new AbortController();
    this.drawing = abort;
    const cancel = button(t('area.cancel'), () => abort.abort());
    this.drawBar.replaceChildren(h('p', {}, t(kind === 'circle' ? 'area.circle_hint' : 'area.drawing_hint')), cancel);
    this.drawBar.hidden = false;
    const onKey = (e: KeyboardEvent) => {
      if (e.key === 'Escape') abort.abort();
    };
    document.addEventListener('keydown', onKey);
    this.vmap.map.getCanvas().focus();
    const shape = await this.vmap.drawShape(kind, abort.signal);
    document.removeEventListener('keydown', onKey);
    this.drawBar.hidden = true;
    if (this.drawing === abort) this.drawing = null;
    if (shape) await this.editArea(null, shape);
  }

  private reshapeArea(a: AreaFeature): void {
    const handle = this.vmap.editPolygon(a.geometry as Polygon);
    this.vmap.fitGeometry(a.geometry);
    const finish = async (save: boolean) => {
      this.drawBar.hidden = true;
      if (!save) return handle.cancel();
      const geometry = handle.finish();
      await this.save({ type: 'Feature', properties: writable(a.properties), geometry }, a.id);
    };
    this.drawBar.replaceChildren(h('p', {}, t('area.shape_hint')),
      button(t('area.save_shape'), () => void finish(true), { class: 'primary' }),
      button(t('area.cancel'), () => void finish(false)));
    this.drawBar.hidden = false;
  }

  /** The area form: for a new drawn shape, a circle typed in, or an existing area. */
  private async editArea(existing: AreaFeature | null, drawn: DrawnShape | null): Promise<void> {
    const p: Partial<AreaProps> = existing?.properties ?? { kind: 'security_area', security_level: 3 };
    const name = h('input', { type: 'text', required: true, maxlength: '200', 'data-testid': 'area-name' });
    name.value = p.name ?? '';
    const kind = h('select', {}, ...AREA_KINDS.map((k) => h('option', { value: k, selected: k === p.kind }, kindLabel(k))));
    const level = h('select', { 'data-testid': 'area-level' },
      h('option', { value: '' }, levelLabel(null)),
      ...[1, 2, 3, 4, 5, 6].map((l) => h('option', { value: String(l), selected: l === p.security_level }, levelLabel(l))));
    const advisory = h('textarea', { rows: '3', maxlength: '4000' });
    advisory.value = p.advisory ?? '';
    const from = h('input', { type: 'datetime-local' });
    from.value = toLocalInput(p.valid_from);
    const until = h('input', { type: 'datetime-local' });
    until.value = toLocalInput(p.valid_until);
    const existingCircle = existing?.geometry.type === 'Point' ? (existing.geometry as Point) : null;
    const typedCircle = !drawn && (!existing || existingCircle);
    const lat = h('input', { type: 'number', step: 'any', min: '-90', max: '90', required: true, 'data-testid': 'area-lat' });
    const lon = h('input', { type: 'number', step: 'any', min: '-180', max: '180', required: true, 'data-testid': 'area-lon' });
    const radius = h('input', { type: 'number', step: 'any', min: '0.01', required: true, 'data-testid': 'area-radius' });
    if (existingCircle) {
      lon.value = String(existingCircle.coordinates[0]);
      lat.value = String(existingCircle.coordinates[1]);
      radius.value = String((p.radius_m ?? 0) / 1000);
    } else if (drawn?.kind === 'circle') {
      lon.value = String(drawn.center[0]);
      lat.value = String(drawn.center[1]);
      radius.value = (drawn.radiusM / 1000).toFixed(3);
    }
    const status = h('p', { class: 'form-status', role: 'alert' });
    const formId = uid('area-form');
    const form = h('form', { id: formId, class: 'area-form', novalidate: true },
      field(t('area.name'), name),
      h('div', { class: 'row' }, field(t('area.kind'), kind), field(t('area.level'), level)),
      field(t('area.advisory'), advisory),
      h('div', { class: 'row' }, field(t('area.valid_from'), from), field(t('area.valid_until'), until)),
      typedCircle || drawn?.kind === 'circle'
        ? h('div', { class: 'row' }, field(t('area.lat'), lat), field(t('area.lon'), lon), field(t('area.radius_km'), radius))
        : null,
      status);
    const submit = h('button', { type: 'submit', form: formId, class: 'primary', 'data-testid': 'area-save' }, t('area.save'));
    const dlg = openDialog(existing ? existing.properties.name : t('area.new'), form, [submit, button(t('area.cancel'), () => dlg.close())]);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      let geometry: Geometry;
      let radiusM: number | undefined;
      if (typedCircle || drawn?.kind === 'circle') {
        geometry = { type: 'Point', coordinates: [Number(lon.value), Number(lat.value)] };
        radiusM = Math.round(Number(radius.value) * 1000);
      } else if (drawn?.kind === 'polygon') geometry = drawn.geometry;
      else geometry = existing!.geometry;
      const props: Record<string, unknown> = {
        ...(existing ? writable(existing.properties) : {}),
        name: name.value.trim(),
        kind: kind.value,
        security_level: level.value ? Number(level.value) : null,
        advisory: advisory.value.trim() || null,
        valid_from: fromLocalInput(from.value),
        valid_until: fromLocalInput(until.value),
      };
      if (radiusM !== undefined) props.radius_m = radiusM;
      submit.disabled = true;
      const ok = await this.save({ type: 'Feature', properties: props, geometry }, existing?.id, status);
      submit.disabled = false;
      if (ok) dlg.close();
    });
    name.focus();
    await dlg.closed;
  }

  private async save(feature: Feature, id?: number, status?: HTMLElement): Promise<boolean> {
    try {
      const saved = id === undefined ? await api.createArea(feature) : await api.replaceArea(id, feature);
      announce(t('area.saved', { name: saved.properties.name }));
      await this.loadAreas();
      this.selectArea(saved.id, id === undefined);
      return true;
    } catch (e) {
      if (status) status.textContent = t('error.generic', { detail: errorText(e) });
      else reportError(e);
      return false;
    }
  }

  private async deleteArea(a: AreaFeature): Promise<void> {
    const yes = h('button', { type: 'button', class: 'danger' }, t('area.delete'));
    const dlg = openDialog(t('area.delete_confirm', { name: a.properties.name }), h('p', {}, a.properties.name), [yes, button(t('area.cancel'), () => dlg.close())]);
    yes.addEventListener('click', async () => {
      try {
        await api.deleteArea(a.id);
        dlg.close();
        this.selected = null;
        this.vmap.selectArea(null);
        announce(t('area.deleted'));
        await this.loadAreas();
      } catch (e) {
        reportError(e);
      }
    });
    yes.focus();
    await dlg.closed;
  }

  private async importAreas(file: File): Promise<void> {
    let features: Feature[];
    try {
      features = featuresFromImport(await file.text(), (i) => `${file.name.replace(/\.[^.]+$/, '')} ${i}`);
    } catch (e) {
      return reportError(e);
    }
    const failures: string[] = [];
    let ok = 0;
    for (const f of features) {
      try {
        await api.createArea(f);
        ok++;
      } catch (e) {
        failures.push(t('area.import_failed', { name: String(f.properties?.name), detail: errorText(e) }));
      }
    }
    announce(t('area.imported', { ok, total: features.length }), failures.length ? 'error' : 'info');
    failures.slice(0, 5).forEach((f) => announce(f, 'error'));
    await this.loadAreas();
  }

  private async exportAreas(): Promise<void> {
    try {
      const fc = await api.areas();
      download('vigil-areas.geojson', exportCollection(fc as FeatureCollection), 'application/geo+json');
    } catch (e) {
      reportError(e);
    }
  }
}

/** A position from the API as the map keeps it. */
export function toPoint(v: PositionView): PositionPoint {
  return { key: positionKey(v.subject, v.id), subject: v.subject, id: v.id, name: v.name, lat: v.lat, lon: v.lon, accuracy_m: v.accuracy_m, recorded_at: v.recorded_at, area_ids: v.area_ids };
}

/** Properties the API takes back on PUT (it computes the rest). */
function writable(p: AreaProps): Record<string, unknown> {
  const { security_level_name: _name, ...rest } = p as AreaProps & { created_at?: string; updated_at?: string };
  delete (rest as Record<string, unknown>).created_at;
  delete (rest as Record<string, unknown>).updated_at;
  delete (rest as Record<string, unknown>).area_id;
  return rest;
}

function toLocalInput(iso: string | null | undefined): string {
  if (!iso) return '';
  const d = new Date(iso);
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function fromLocalInput(value: string): string | null {
  return value ? new Date(value).toISOString() : null;
}
