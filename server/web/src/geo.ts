// Pure geometry and GeoJSON helpers (no DOM, no map): unit-tested by vitest (geo.test.ts).

import type { Feature, FeatureCollection, Geometry, Point, Polygon, Position } from 'geojson';

const EARTH_RADIUS_M = 6_371_008.8;

/** One fill colour per UN security level, dark enough for white text and distinct in greyscale. */
export const LEVEL_COLOURS: Record<number, string> = {
  1: '#1b7f3b',
  2: '#1565c0',
  3: '#b8860b',
  4: '#d35400',
  5: '#c62828',
  6: '#4a148c',
};
export const NO_LEVEL_COLOUR = '#546e7a';

export function levelColour(level: number | null | undefined): string {
  return (level && LEVEL_COLOURS[level]) || NO_LEVEL_COLOUR;
}

const rad = (deg: number) => (deg * Math.PI) / 180;
const deg = (r: number) => (r * 180) / Math.PI;

/** Great-circle distance in metres between two [lon, lat] positions. */
export function distanceM(a: Position, b: Position): number {
  const [lon1, lat1] = [rad(a[0]), rad(a[1])];
  const [lon2, lat2] = [rad(b[0]), rad(b[1])];
  const h = Math.sin((lat2 - lat1) / 2) ** 2 + Math.cos(lat1) * Math.cos(lat2) * Math.sin((lon2 - lon1) / 2) ** 2;
  return 2 * EARTH_RADIUS_M * Math.asin(Math.min(1, Math.sqrt(h)));
}

/** The point `distance` metres from `origin` on `bearing` degrees. */
export function destination(origin: Position, distance: number, bearing: number): Position {
  const [lon1, lat1] = [rad(origin[0]), rad(origin[1])];
  const d = distance / EARTH_RADIUS_M;
  const b = rad(bearing);
  const lat2 = Math.asin(Math.sin(lat1) * Math.cos(d) + Math.cos(lat1) * Math.sin(d) * Math.cos(b));
  const lon2 = lon1 + Math.atan2(Math.sin(b) * Math.sin(d) * Math.cos(lat1), Math.cos(d) - Math.sin(lat1) * Math.sin(lat2));
  return [round6(((deg(lon2) + 540) % 360) - 180), round6(deg(lat2))];
}

function round6(x: number): number {
  return Math.round(x * 1e6) / 1e6;
}

/** A circle as a closed ring of `steps` vertices, for drawing (the server keeps Point + radius). */
export function circleRing(center: Position, radiusM: number, steps = 64): Position[] {
  const ring = Array.from({ length: steps }, (_, i) => destination(center, radiusM, (360 * i) / steps));
  ring.push(ring[0]!);
  return ring;
}

/** Centre and radius of a drawn circle (a regular ring around its centre). */
export function circleFromRing(ring: Position[]): { center: Position; radiusM: number } {
  const open = ring.length > 1 && ring[0]![0] === ring.at(-1)![0] && ring[0]![1] === ring.at(-1)![1] ? ring.slice(0, -1) : ring;
  // The mean of unit vectors, so that a circle across the antimeridian has the right centre.
  let x = 0;
  let y = 0;
  let z = 0;
  for (const [lon, lat] of open) {
    x += Math.cos(rad(lat!)) * Math.cos(rad(lon!));
    y += Math.cos(rad(lat!)) * Math.sin(rad(lon!));
    z += Math.sin(rad(lat!));
  }
  const center: Position = [round6(deg(Math.atan2(y, x))), round6(deg(Math.atan2(z, Math.hypot(x, y))))];
  const radiusM = open.reduce((sum, p) => sum + distanceM(center, p), 0) / open.length;
  return { center, radiusM: Math.round(radiusM) };
}

/** Area features as the map draws them: circles (Point + radius_m) become polygons. */
export function forDisplay<P extends { radius_m?: number }>(fc: FeatureCollection<Geometry, P>): FeatureCollection<Geometry, P> {
  return {
    type: 'FeatureCollection',
    features: fc.features.map((f) => {
      const r = f.properties?.radius_m;
      if (f.geometry?.type === 'Point' && typeof r === 'number' && r > 0) {
        const polygon: Polygon = { type: 'Polygon', coordinates: [circleRing(f.geometry.coordinates, r)] };
        return { ...f, geometry: polygon };
      }
      return f;
    }),
  };
}

/** Properties the server computes; dropped before sending a feature back. */
const READ_ONLY = ['created_at', 'updated_at', 'security_level_name'];

/**
 * Features from an imported GeoJSON text, ready to POST: a FeatureCollection, a Feature or a bare
 * geometry; circles drawn by other tools (`radiusKilometers`) become Point + `radius_m`.
 */
export function featuresFromImport(text: string, fallbackName: (i: number) => string): Feature[] {
  const json = JSON.parse(text) as { type?: string };
  const raw: Feature[] =
    json.type === 'FeatureCollection'
      ? (json as FeatureCollection).features
      : json.type === 'Feature'
        ? [json as Feature]
        : json.type
          ? [{ type: 'Feature', properties: {}, geometry: json as Geometry }]
          : [];
  if (raw.length === 0) throw new Error('not GeoJSON: expected a FeatureCollection, a Feature or a geometry');
  return raw.map((f, i) => {
    const props: Record<string, unknown> = { ...(f.properties ?? {}) };
    for (const key of READ_ONLY) delete props[key];
    if (typeof props.name !== 'string' || !props.name.trim()) props.name = fallbackName(i + 1);
    let geometry = f.geometry;
    const km = props.radiusKilometers;
    delete props.radiusKilometers;
    delete props.mode;
    if (typeof km === 'number' && geometry?.type === 'Polygon') {
      const { center } = circleFromRing(geometry.coordinates[0]!);
      geometry = { type: 'Point', coordinates: center } satisfies Point;
      props.radius_m = Math.round(km * 1000);
    }
    return { type: 'Feature', properties: props, geometry };
  });
}

/** The areas as one downloadable FeatureCollection, importable again. */
export function exportCollection(fc: FeatureCollection): string {
  return JSON.stringify(
    {
      type: 'FeatureCollection',
      features: fc.features.map((f) => {
        const props = { ...(f.properties ?? {}) };
        for (const key of READ_ONLY) delete props[key];
        return { type: 'Feature', id: f.id, properties: props, geometry: f.geometry };
      }),
    },
    null,
    1,
  );
}

/** A Point feature per position, with the id the map and live events share. */
export interface PositionPoint {
  key: string;
  subject: 'user' | 'asset';
  id: number;
  name: string;
  lat: number;
  lon: number;
  accuracy_m: number | null;
  recorded_at: string;
  /** Areas the subject is inside, as the server last said. */
  area_ids?: number[];
}

export function positionKey(subject: string, id: number): string {
  return `${subject}:${id}`;
}

export function positionsCollection(points: Iterable<PositionPoint>): FeatureCollection<Point> {
  const features: Feature<Point>[] = [];
  for (const p of points) {
    features.push({
      type: 'Feature',
      geometry: { type: 'Point', coordinates: [p.lon, p.lat] },
      properties: { key: p.key, subject: p.subject, id: p.id, name: p.name, recorded_at: p.recorded_at, accuracy_m: p.accuracy_m },
    });
  }
  return { type: 'FeatureCollection', features };
}

/** `n` synthetic positions spread over East Africa, deterministic (the browser test's 50,000). */
export function syntheticPositions(n: number, seed = 42): PositionPoint[] {
  let state = seed >>> 0;
  const next = () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
  const now = new Date().toISOString();
  return Array.from({ length: n }, (_, i) => ({
    key: positionKey('user', 1_000_000 + i),
    subject: 'user' as const,
    id: 1_000_000 + i,
    name: `Synthetic ${i}`,
    lat: -4 + next() * 16,
    lon: 29 + next() * 19,
    accuracy_m: 10,
    recorded_at: now,
  }));
}

/** Bounding box [west, south, east, north] of a geometry's positions. */
export function bbox(geometry: Geometry): [number, number, number, number] {
  let w = Infinity;
  let s = Infinity;
  let e = -Infinity;
  let n = -Infinity;
  const visit = (c: unknown): void => {
    if (Array.isArray(c) && typeof c[0] === 'number') {
      w = Math.min(w, c[0]);
      e = Math.max(e, c[0]);
      s = Math.min(s, c[1] as number);
      n = Math.max(n, c[1] as number);
    } else if (Array.isArray(c)) c.forEach(visit);
  };
  if (geometry.type === 'GeometryCollection') {
    for (const g of geometry.geometries) {
      const [gw, gs, ge, gn] = bbox(g);
      visit([[gw, gs], [ge, gn]]);
    }
  } else visit(geometry.coordinates);
  return [w, s, e, n];
}
