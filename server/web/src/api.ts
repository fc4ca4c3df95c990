// The HTTP API client: sign-in, token refresh, and typed calls to /api/v1.
//
// Where the tokens live: the access token only in memory; the refresh token in sessionStorage,
// so that a reload keeps the session but closing the tab ends it. Never in localStorage: it
// outlives the browser session and is readable by any script of this origin for as long as
// it exists, which on a shared field-office computer means the next person finds the account
// open; a stolen refresh token is also good for 30 days. sessionStorage limits both to the tab.

import type { Feature, FeatureCollection, Geometry } from 'geojson';

export const ROLES = ['staff', 'operator', 'adviser', 'org_admin', 'oversight'] as const;
export type Role = (typeof ROLES)[number];

export interface Me {
  id: number;
  org_id: number;
  email: string;
  name: string;
  phone: string | null;
  preferred_language: string;
  active: boolean;
  system_admin: boolean;
  location_mode: 'tracking' | 'location_less';
  roles: Role[];
  last_seen_at: string | null;
}

export type Person = Me & { duty_station_id: number | null; created_at: string };

export interface Organisation {
  id: number;
  name: string;
  short_name: string;
}

export interface AreaProps {
  name: string;
  kind: string;
  security_level: number | null;
  security_level_name?: string;
  parent_id: number | null;
  org_id: number | null;
  advisory: string | null;
  valid_from: string | null;
  valid_until: string | null;
  radius_m?: number;
}
export type AreaFeature = Feature<Geometry, AreaProps> & { id: number };

export interface PositionView {
  subject: 'user' | 'asset';
  id: number;
  name: string;
  org_id: number;
  lat: number;
  lon: number;
  accuracy_m: number | null;
  recorded_at: string;
  area_ids: number[];
}

export interface Asset {
  id: number;
  org_id: number;
  kind: string;
  name: string;
  identifier: string | null;
  active: boolean;
}

export interface AccessEntry {
  at: string;
  viewer_id: number;
  viewer_name: string;
  viewer_org_id: number;
  purpose: string;
}

export interface AuditEntry {
  id: number;
  at: string;
  actor_id: number | null;
  action: string;
  target: string;
  detail: string;
}

export interface RosterReport {
  dry_run: boolean;
  rows: number;
  created: number;
  updated: number;
  unchanged: number;
  deactivated: number;
}

export interface Issue {
  at: string;
  reason: string;
}

/** An RFC 9457 problem from the server, or a network failure (status 0). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly title: string,
    readonly detail: string,
    readonly issues: Issue[] = [],
  ) {
    super(detail || title);
  }
}

interface Tokens {
  access_token: string;
  refresh_token: string;
  expires_in: number;
}

const REFRESH_KEY = 'vigil.refresh';

let access: string | null = null;
let refreshing: Promise<boolean> | null = null;
const signedOutListeners: Array<() => void> = [];

/** The current access token (for the WebSocket's hello). */
export function accessToken(): string | null {
  return access;
}

/** Called when the session ends (logout, or a refresh the server refused). */
export function onSignedOut(listener: () => void): void {
  signedOutListeners.push(listener);
}

function keep(tokens: Tokens): void {
  access = tokens.access_token;
  sessionStorage.setItem(REFRESH_KEY, tokens.refresh_token);
}

function forget(): void {
  access = null;
  sessionStorage.removeItem(REFRESH_KEY);
}

export async function login(email: string, password: string): Promise<void> {
  keep(await request<Tokens>('POST', '/auth/login', { email, password }, false));
}

/** Trades the stored refresh token for new tokens; false when there is no session. */
export function refresh(): Promise<boolean> {
  refreshing ??= (async () => {
    const token = sessionStorage.getItem(REFRESH_KEY);
    if (!token) return false;
    try {
      keep(await request<Tokens>('POST', '/auth/refresh', { refresh_token: token }, false));
      return true;
    } catch (e) {
      // A refused refresh ends the session; a network failure keeps it for the next try.
      if (e instanceof ApiError && e.status >= 400 && e.status < 500) {
        forget();
        signedOutListeners.forEach((l) => l());
      }
      return false;
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

/** Resumes a session after a reload; true when signed in. */
export async function resume(): Promise<boolean> {
  return access !== null || refresh();
}

export async function logout(): Promise<void> {
  try {
    if (access) await request('POST', '/auth/logout', {});
  } finally {
    forget();
    signedOutListeners.forEach((l) => l());
  }
}

type Body = object | string | undefined;

/** One call to `/api/v1{path}`; refreshes the access token once on a 401. */
export async function request<T>(
  method: string,
  path: string,
  body?: Body,
  authorised = true,
  contentType = 'application/json',
): Promise<T> {
  const send = () => {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = contentType;
    if (authorised && access) headers.authorization = `Bearer ${access}`;
    return fetch(`/api/v1${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
      cache: 'no-store',
    });
  };
  let res: Response;
  try {
    res = await send();
    if (res.status === 401 && authorised && (await refresh())) res = await send();
  } catch (e) {
    throw new ApiError(0, 'network', e instanceof Error ? e.message : String(e));
  }
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  const json: unknown = text ? safeJson(text) : undefined;
  if (!res.ok) {
    const p = (json ?? {}) as { title?: string; detail?: string; issues?: Issue[] };
    throw new ApiError(res.status, p.title ?? res.statusText, p.detail ?? text, p.issues ?? []);
  }
  return json as T;
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

export const api = {
  me: () => request<Me>('GET', '/me'),
  organisations: () => request<Organisation[]>('GET', '/organisations'),
  areas: () => request<FeatureCollection<Geometry, AreaProps>>('GET', '/areas'),
  createArea: (feature: Feature) => request<AreaFeature>('POST', '/areas', feature),
  replaceArea: (id: number, feature: Feature) => request<AreaFeature>('PUT', `/areas/${id}`, feature),
  deleteArea: (id: number) => request<void>('DELETE', `/areas/${id}`),
  positions: (orgId?: number) =>
    request<PositionView[]>('GET', orgId === undefined ? '/positions' : `/positions?org_id=${orgId}`),
  sendFixes: (fixes: Fix[]) => request<{ accepted: number }>('POST', '/positions', { fixes }),
  assets: (orgId: number) => request<Asset[]>('GET', `/organisations/${orgId}/assets`),
  users: (orgId: number) => request<Person[]>('GET', `/organisations/${orgId}/users`),
  createUser: (orgId: number, person: { email: string; name: string; roles: Role[]; password?: string }) =>
    request<Person>('POST', `/organisations/${orgId}/users`, person),
  updateUser: (id: number, change: { active?: boolean; name?: string }) =>
    request<Person>('PATCH', `/users/${id}`, change),
  grantRole: (id: number, role: Role) => request<unknown>('PUT', `/users/${id}/roles/${role}`),
  revokeRole: (id: number, role: Role) => request<unknown>('DELETE', `/users/${id}/roles/${role}`),
  importRoster: (orgId: number, file: string, csv: boolean, dryRun: boolean, deactivateMissing: boolean) =>
    request<RosterReport>(
      'POST',
      `/organisations/${orgId}/roster?dry_run=${dryRun}&deactivate_missing=${deactivateMissing}`,
      file,
      true,
      csv ? 'text/csv' : 'application/json',
    ),
  accessLog: () => request<AccessEntry[]>('GET', '/me/location-access'),
  audit: (orgId: number) => request<AuditEntry[]>('GET', `/organisations/${orgId}/audit?limit=200`),
  locationMode: () => request<{ mode: Me['location_mode'] }>('GET', '/me/location-mode'),
  setLocationMode: (mode: Me['location_mode']) => request<{ mode: Me['location_mode'] }>('PUT', '/me/location-mode', { mode }),
  followed: () => request<{ area_ids: number[] }>('GET', '/me/followed-areas'),
  setFollowed: (area_ids: number[]) => request<{ area_ids: number[] }>('PUT', '/me/followed-areas', { area_ids }),
};

export interface Fix {
  lat: number;
  lon: number;
  accuracy_m: number | null;
  recorded_at: string;
}

/** Web config served beside the bundle: an optional online tile server. */
export interface WebConfig {
  map_tiles_url: string | null;
  map_tiles_attribution: string;
}

export async function webConfig(): Promise<WebConfig> {
  try {
    const res = await fetch('/web-config.json');
    if (res.ok) return (await res.json()) as WebConfig;
  } catch {
    // Offline or an old server: the offline basemap needs no configuration.
  }
  return { map_tiles_url: null, map_tiles_attribution: '' };
}
