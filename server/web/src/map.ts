// The map: MapLibre GL (WebGL) over an offline basemap of Natural Earth country outlines that
// ships in the bundle (optionally under raster tiles when `map_tiles_url` names a server);
// security areas coloured by level; personnel and assets as GPU circles clustered in a worker,
// so 50,000 positions neither freeze the page nor flood it; drawing and reshaping areas.
//
// No map fonts are loaded (they would need a server): cluster counts are HTML markers, drawn
// only for the clusters in view, and names live in the side panel and pop-ups.

import maplibregl, { type GeoJSONSource } from 'maplibre-gl';
import workerUrl from 'maplibre-gl/dist/maplibre-gl-csp-worker.js?url';
import 'maplibre-gl/dist/maplibre-gl.css';
import { TerraDraw, TerraDrawCircleMode, TerraDrawPolygonMode, TerraDrawSelectMode } from 'terra-draw';
import { TerraDrawMapLibreGLAdapter } from 'terra-draw-maplibre-gl-adapter';
import { feature as topoFeature } from 'topojson-client';
import type { Topology } from 'topojson-specification';
import countriesUrl from 'world-atlas/countries-50m.json?url';
import type { Feature, FeatureCollection, Geometry, Polygon, Position } from 'geojson';

import type { AreaProps, WebConfig } from './api';
import { LEVEL_COLOURS, NO_LEVEL_COLOUR, bbox, circleFromRing, forDisplay, positionsCollection, syntheticPositions, type PositionPoint } from './geo';
import { t } from './i18n';

maplibregl.setWorkerUrl(workerUrl);

const EMPTY: FeatureCollection = { type: 'FeatureCollection', features: [] };
/** Live updates are gathered and handed to the clustering worker at most this often. */
const FLUSH_MS = 1000;
/** Cluster count labels drawn at once, at most (the rest are still circles). */
const MAX_COUNT_LABELS = 300;

const levelColour: maplibregl.ExpressionSpecification = [
  'match', ['coalesce', ['get', 'security_level'], 0],
  ...Object.entries(LEVEL_COLOURS).flatMap(([level, colour]) => [Number(level), colour]),
  NO_LEVEL_COLOUR,
] as unknown as maplibregl.ExpressionSpecification;

export type DrawnShape = { kind: 'polygon'; geometry: Polygon } | { kind: 'circle'; center: Position; radiusM: number };

export class VigilMap {
  readonly map: maplibregl.Map;
  private readonly points = new Map<string, PositionPoint>();
  /** Made-up positions kept across reloads (load testing: `?synthetic=50000`). */
  private synthetic: PositionPoint[] = [];
  private flushTimer: number | undefined;
  private readonly countMarkers = new Map<number, maplibregl.Marker>();
  private draw: TerraDraw | null = null;
  private popup: maplibregl.Popup | null = null;
  private areaClick: ((id: number) => void) | null = null;
  private pointClick: ((key: string) => void) | null = null;
  private drawFinished: ((id: string | number) => void) | null = null;

  private constructor(map: maplibregl.Map) {
    this.map = map;
  }

  /** Creates the map in `container` and resolves once its style and basemap are loaded. */
  static async create(container: HTMLElement, config: WebConfig): Promise<VigilMap> {
    const tiles = config.map_tiles_url;
    const map = new maplibregl.Map({
      container,
      center: [37, 4],
      zoom: 4,
      attributionControl: false,
      hash: false,
      style: {
        version: 8,
        sources: {
          ...(tiles ? { tiles: { type: 'raster', tiles: [tiles], tileSize: 256, attribution: config.map_tiles_attribution } } : {}),
          countries: { type: 'geojson', data: EMPTY, attribution: t('map.offline_basemap') },
          areas: { type: 'geojson', data: EMPTY, promoteId: 'area_id' },
          positions: { type: 'geojson', data: EMPTY, cluster: true, clusterRadius: 48, clusterMaxZoom: 13 },
          target: { type: 'geojson', data: EMPTY },
        },
        layers: [
          { id: 'sea', type: 'background', paint: { 'background-color': '#c9dcec' } },
          ...(tiles ? [{ id: 'tiles', type: 'raster' as const, source: 'tiles' }] : []),
          { id: 'countries-fill', type: 'fill', source: 'countries', paint: { 'fill-color': '#f3f1ec', 'fill-opacity': tiles ? 0 : 1 } },
          { id: 'countries-line', type: 'line', source: 'countries', paint: { 'line-color': '#6b6b6b', 'line-width': ['interpolate', ['linear'], ['zoom'], 2, 0.5, 8, 1.5] } },
          { id: 'areas-fill', type: 'fill', source: 'areas', filter: ['!=', ['get', 'kind'], 'country'], paint: { 'fill-color': levelColour, 'fill-opacity': 0.22 } },
          { id: 'areas-line', type: 'line', source: 'areas', filter: ['!=', ['get', 'kind'], 'country'], paint: {
            'line-color': levelColour,
            'line-width': ['case', ['boolean', ['feature-state', 'selected'], false], 5, 2.5],
          } },
          // Countries as areas (their level applies country-wide): a dashed border, no fill.
          { id: 'country-areas-line', type: 'line', source: 'areas', filter: ['==', ['get', 'kind'], 'country'], paint: {
            'line-color': levelColour,
            'line-width': ['case', ['boolean', ['feature-state', 'selected'], false], 5, 2],
            'line-dasharray': [3, 2],
          } },
          // What an alert or roll-call being composed reaches: bright fill, thick dark outline.
          { id: 'target-fill', type: 'fill', source: 'target', paint: { 'fill-color': '#ffbf47', 'fill-opacity': 0.45 } },
          { id: 'target-line', type: 'line', source: 'target', paint: { 'line-color': '#111111', 'line-width': 4, 'line-dasharray': [2, 1] } },
          { id: 'clusters', type: 'circle', source: 'positions', filter: ['has', 'point_count'], paint: {
            'circle-color': '#0b3d6e',
            'circle-opacity': 0.85,
            'circle-radius': ['step', ['get', 'point_count'], 14, 10, 17, 100, 21, 1000, 26, 10000, 32],
            'circle-stroke-color': '#ffffff',
            'circle-stroke-width': 2,
          } },
          { id: 'points', type: 'circle', source: 'positions', filter: ['!', ['has', 'point_count']], paint: {
            'circle-color': ['match', ['get', 'subject'], 'asset', '#e65100', '#0b3d6e'],
            'circle-radius': ['match', ['get', 'subject'], 'asset', 7, 6],
            'circle-stroke-color': '#ffffff',
            'circle-stroke-width': 2,
          } },
        ],
      },
    });
    map.addControl(new maplibregl.NavigationControl({ showCompass: false }), 'top-right');
    map.addControl(new maplibregl.ScaleControl({}), 'bottom-left');
    map.addControl(new maplibregl.AttributionControl({ compact: true, customAttribution: '<a href="/licenses.txt" target="_blank">Licences</a>' }), 'bottom-right');
    map.getCanvas().setAttribute('aria-label', t('map.label'));
    const vm = new VigilMap(map);
    // Reachable from the page for the browser tests (and for a look from the dev tools).
    (container as HTMLElement & { vigilMap?: VigilMap }).vigilMap = vm;
    await new Promise<void>((resolve) => map.once('load', () => resolve()));
    vm.wire();
    void vm.loadCountries();
    return vm;
  }

  private async loadCountries(): Promise<void> {
    const res = await fetch(countriesUrl);
    const topology = (await res.json()) as Topology;
    const countries = topoFeature(topology, topology.objects.countries!) as unknown as FeatureCollection;
    (this.map.getSource('countries') as GeoJSONSource).setData(countries);
  }

  private wire(): void {
    const map = this.map;
    map.on('click', 'clusters', async (e) => {
      const f = e.features?.[0];
      if (!f) return;
      const source = map.getSource('positions') as GeoJSONSource;
      const zoom = await source.getClusterExpansionZoom(f.properties.cluster_id as number);
      map.easeTo({ center: (f.geometry as GeoJSON.Point).coordinates as [number, number], zoom });
    });
    map.on('click', 'points', (e) => {
      const key = e.features?.[0]?.properties.key as string | undefined;
      if (key) this.pointClick?.(key);
    });
    map.on('click', 'areas-fill', (e) => {
      if (this.draw && this.draw.getMode() !== 'static') return;
      if (map.queryRenderedFeatures(e.point, { layers: ['points', 'clusters'] }).length) return;
      const id = e.features?.[0]?.properties.area_id as number | undefined;
      if (id !== undefined) this.areaClick?.(id);
    });
    for (const layer of ['clusters', 'points', 'areas-fill']) {
      map.on('mouseenter', layer, () => (map.getCanvas().style.cursor = 'pointer'));
      map.on('mouseleave', layer, () => (map.getCanvas().style.cursor = ''));
    }
    const relabel = () => this.updateCountLabels();
    map.on('moveend', relabel);
    map.on('idle', relabel);
    map.on('sourcedata', (e) => {
      if (e.sourceId === 'positions' && e.isSourceLoaded) relabel();
    });
  }

  onAreaClick(listener: (id: number) => void): void {
    this.areaClick = listener;
  }

  onPointClick(listener: (key: string) => void): void {
    this.pointClick = listener;
  }

  setAreas(fc: FeatureCollection<Geometry, AreaProps>): void {
    const display = forDisplay(fc);
    // feature-state needs a numeric id in the properties (promoteId).
    display.features = display.features.map((f) => ({ ...f, properties: { ...f.properties, area_id: f.id } as AreaProps }));
    (this.map.getSource('areas') as GeoJSONSource).setData(display);
  }

  /** Highlights the shapes a message is aimed at (stored areas and shapes drawn for it). */
  setTarget(features: Feature[]): void {
    const fc = forDisplay({ type: 'FeatureCollection', features } as FeatureCollection<Geometry, { radius_m?: number }>);
    (this.map.getSource('target') as GeoJSONSource).setData(fc);
  }

  selectArea(id: number | null): void {
    this.map.removeFeatureState({ source: 'areas' });
    if (id !== null) this.map.setFeatureState({ source: 'areas', id }, { selected: true });
  }

  fitGeometry(geometry: Geometry, radiusM = 0, animate = true): void {
    const [w, s, e, n] = bbox(geometry);
    if (!Number.isFinite(w)) return;
    const pad = radiusM / 111_000;
    // Room for what lies over the map: the drawing bar at the top, the legend at the end side.
    const rtl = document.documentElement.dir === 'rtl';
    const padding = { top: 100, bottom: 50, left: rtl ? 170 : 50, right: rtl ? 50 : 170 };
    this.map.fitBounds([[w - pad, s - pad], [e + pad, n + pad]], { padding, maxZoom: 13, duration: animate ? 600 : 0 });
  }

  /** Replaces every position (a fresh `GET /positions`). */
  setPositions(points: PositionPoint[]): void {
    this.points.clear();
    for (const p of this.synthetic) this.points.set(p.key, p);
    for (const p of points) this.points.set(p.key, p);
    this.scheduleFlush(true);
  }

  /** Adds `n` made-up people spread over East Africa, to see how the map holds up. */
  addSynthetic(n: number): void {
    this.synthetic = syntheticPositions(n);
    for (const p of this.synthetic) this.points.set(p.key, p);
    this.scheduleFlush(true);
  }

  /** Adds or moves one position (a live event); drawn at the next flush. */
  upsertPosition(point: PositionPoint): void {
    const old = this.points.get(point.key);
    if (old && Date.parse(old.recorded_at) > Date.parse(point.recorded_at)) return;
    this.points.set(point.key, point);
    this.scheduleFlush(false);
  }

  position(key: string): PositionPoint | undefined {
    return this.points.get(key);
  }

  allPositions(): IterableIterator<PositionPoint> {
    return this.points.values();
  }

  positionCount(): number {
    return this.points.size;
  }

  private scheduleFlush(now: boolean): void {
    if (now) {
      window.clearTimeout(this.flushTimer);
      this.flushTimer = undefined;
      this.flush();
    } else {
      this.flushTimer ??= window.setTimeout(() => {
        this.flushTimer = undefined;
        this.flush();
      }, FLUSH_MS);
    }
  }

  private flush(): void {
    (this.map.getSource('positions') as GeoJSONSource).setData(positionsCollection(this.points.values()));
  }

  /** HTML count labels for the clusters in view (map fonts would need a glyph server). */
  private updateCountLabels(): void {
    const seen = new Set<number>();
    // Only what is drawn now: the source also holds tiles of other zoom levels.
    const features = this.map.queryRenderedFeatures({ layers: ['clusters'] });
    for (const f of features) {
      const id = f.properties.cluster_id as number;
      if (seen.has(id) || seen.size >= MAX_COUNT_LABELS) continue;
      seen.add(id);
      const coords = (f.geometry as GeoJSON.Point).coordinates as [number, number];
      let marker = this.countMarkers.get(id);
      if (!marker) {
        const el = document.createElement('div');
        el.className = 'cluster-count';
        el.setAttribute('aria-hidden', 'true');
        el.textContent = String(f.properties.point_count_abbreviated);
        marker = new maplibregl.Marker({ element: el }).setLngLat(coords).addTo(this.map);
        this.countMarkers.set(id, marker);
      } else marker.setLngLat(coords);
    }
    for (const [id, marker] of this.countMarkers) {
      if (!seen.has(id)) {
        marker.remove();
        this.countMarkers.delete(id);
      }
    }
  }

  showPopup(at: Position, content: Node): void {
    this.popup?.remove();
    this.popup = new maplibregl.Popup({ closeButton: true, maxWidth: '320px', focusAfterOpen: true })
      .setLngLat(at as [number, number])
      .setDOMContent(content)
      .addTo(this.map);
  }

  private drawing(): TerraDraw {
    if (!this.draw) {
      this.draw = new TerraDraw({
        adapter: new TerraDrawMapLibreGLAdapter({ map: this.map }),
        modes: [
          new TerraDrawPolygonMode(),
          new TerraDrawCircleMode(),
          new TerraDrawSelectMode({
            flags: { polygon: { feature: { draggable: true, coordinates: { draggable: true, midpoints: true, deletable: true } } } },
          }),
        ],
      });
      this.draw.start();
      this.draw.on('finish', (id) => this.drawFinished?.(id));
    }
    return this.draw;
  }

  /** Lets the person draw one shape; resolves with it, or null when cancelled. */
  drawShape(kind: 'polygon' | 'circle', signal: AbortSignal): Promise<DrawnShape | null> {
    const draw = this.drawing();
    draw.clear();
    draw.setMode(kind);
    return new Promise((resolve) => {
      const done = (shape: DrawnShape | null) => {
        this.drawFinished = null;
        draw.clear();
        draw.setMode('static');
        resolve(shape);
      };
      signal.addEventListener('abort', () => done(null), { once: true });
      this.drawFinished = (id) => {
        if (signal.aborted) return;
        const f = draw.getSnapshotFeature(id) as Feature<Polygon> | undefined;
        if (!f || f.geometry.type !== 'Polygon') return done(null);
        if (kind === 'circle') {
          const { center, radiusM } = circleFromRing(f.geometry.coordinates[0]!);
          const km = (f.properties as { radiusKilometers?: number } | null)?.radiusKilometers;
          done({ kind: 'circle', center, radiusM: km ? Math.round(km * 1000) : radiusM });
        } else done({ kind: 'polygon', geometry: f.geometry });
      };
    });
  }

  /** Puts a polygon under the person's hands; `finish` returns the reshaped polygon. */
  editPolygon(polygon: Polygon): { finish: () => Polygon; cancel: () => void } {
    const draw = this.drawing();
    draw.clear();
    draw.setMode('select');
    const [result] = draw.addFeatures([{ type: 'Feature', geometry: polygon, properties: { mode: 'polygon' } }]);
    const id = result?.id;
    if (id !== undefined) draw.selectFeature(id);
    const stop = () => {
      draw.clear();
      draw.setMode('static');
    };
    return {
      finish: () => {
        const f = id === undefined ? undefined : draw.getSnapshotFeature(id);
        stop();
        return (f?.geometry as Polygon | undefined) ?? polygon;
      },
      cancel: stop,
    };
  }
}
