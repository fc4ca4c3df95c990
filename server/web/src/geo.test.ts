import { describe, expect, it } from 'vitest';
import { circleFromRing, circleRing, distanceM, exportCollection, featuresFromImport, forDisplay, levelColour, syntheticPositions } from './geo';

describe('circles', () => {
  it('a drawn ring gives back its centre and radius', () => {
    const ring = circleRing([31.5713, 4.8594], 12_000, 64);
    expect(ring).toHaveLength(65);
    expect(ring[0]).toEqual(ring[64]);
    const { center, radiusM } = circleFromRing(ring);
    expect(center[0]).toBeCloseTo(31.5713, 4);
    expect(center[1]).toBeCloseTo(4.8594, 4);
    expect(Math.abs(radiusM - 12_000)).toBeLessThan(5);
  });

  it('a circle across the antimeridian keeps its centre there', () => {
    const { center, radiusM } = circleFromRing(circleRing([179.9, -16.5], 30_000));
    expect(Math.abs(Math.abs(center[0]!) - 179.9)).toBeLessThan(1e-3);
    expect(Math.abs(radiusM - 30_000)).toBeLessThan(10);
  });

  it('distances are great-circle metres', () => {
    // Juba to Nairobi: about 900 km as the crow flies.
    const km = distanceM([31.5713, 4.8594], [36.8219, -1.2921]) / 1000;
    expect(km).toBeGreaterThan(880);
    expect(km).toBeLessThan(910);
  });

  it('areas that are circles are drawn as polygons, others unchanged', () => {
    const fc = forDisplay({
      type: 'FeatureCollection',
      features: [
        { type: 'Feature', properties: { radius_m: 500 }, geometry: { type: 'Point', coordinates: [30, 2] } },
        { type: 'Feature', properties: {}, geometry: { type: 'Point', coordinates: [30, 2] } },
      ],
    });
    expect(fc.features[0]!.geometry.type).toBe('Polygon');
    expect(fc.features[1]!.geometry.type).toBe('Point');
  });
});

describe('GeoJSON import and export', () => {
  it('reads a collection, a feature or a bare geometry, naming the unnamed', () => {
    const polygon = { type: 'Polygon', coordinates: [[[0, 0], [1, 0], [1, 1], [0, 0]]] };
    expect(featuresFromImport(JSON.stringify(polygon), (i) => `Area ${i}`)[0]!.properties).toEqual({ name: 'Area 1' });
    const fc = { type: 'FeatureCollection', features: [{ type: 'Feature', properties: { name: 'A', created_at: 'x', security_level_name: 'high' }, geometry: polygon }] };
    expect(featuresFromImport(JSON.stringify(fc), () => '')[0]!.properties).toEqual({ name: 'A' });
  });

  it('turns another tool\'s drawn circle into centre and radius', () => {
    const f = { type: 'Feature', properties: { name: 'C', mode: 'circle', radiusKilometers: 2.5 }, geometry: { type: 'Polygon', coordinates: [circleRing([45.3, 2.05], 2500)] } };
    const [out] = featuresFromImport(JSON.stringify(f), () => '');
    expect(out!.geometry).toMatchObject({ type: 'Point' });
    expect(out!.properties).toEqual({ name: 'C', radius_m: 2500 });
  });

  it('refuses what is not GeoJSON', () => {
    expect(() => featuresFromImport('{"hello": 1}', () => '')).toThrow(/not GeoJSON/);
    expect(() => featuresFromImport('not json', () => '')).toThrow();
  });

  it('exports what it imports, without server-computed properties', () => {
    const text = exportCollection({ type: 'FeatureCollection', features: [{ type: 'Feature', id: 3, properties: { name: 'A', updated_at: 'x' }, geometry: { type: 'Point', coordinates: [1, 2] } }] });
    const again = featuresFromImport(text, () => '');
    expect(again[0]!.properties).toEqual({ name: 'A' });
  });
});

describe('the rest', () => {
  it('every security level has its own colour, and no level a neutral one', () => {
    const colours = new Set([1, 2, 3, 4, 5, 6].map(levelColour));
    expect(colours.size).toBe(6);
    expect(levelColour(null)).toBe(levelColour(7));
  });

  it('synthetic positions are deterministic and inside East Africa', () => {
    const a = syntheticPositions(1000);
    expect(syntheticPositions(1000)).toEqual(a.map((p) => ({ ...p, recorded_at: expect.any(String) })));
    expect(new Set(a.map((p) => p.key)).size).toBe(1000);
    for (const p of a) {
      expect(p.lat).toBeGreaterThanOrEqual(-4);
      expect(p.lat).toBeLessThanOrEqual(12);
      expect(p.lon).toBeGreaterThanOrEqual(29);
      expect(p.lon).toBeLessThanOrEqual(48);
    }
  });
});
