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

/** Whether this tab holds a session (a refresh token), whether or not the server can be reached. */
export function hasSession(): boolean {
  return sessionStorage.getItem(REFRESH_KEY) !== null;
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

// ---------- alerts, roll-calls, SOS, chat, push ----------

export const SEVERITIES = ['extreme', 'severe', 'moderate', 'minor', 'unknown'] as const;
export const URGENCIES = ['immediate', 'expected', 'future', 'past', 'unknown'] as const;
export const CERTAINTIES = ['observed', 'likely', 'possible', 'unlikely', 'unknown'] as const;
export const CATEGORIES = ['security', 'safety', 'health', 'rescue', 'fire', 'met', 'geo', 'env', 'transport', 'infra', 'cbrne', 'other'] as const;
/** The ledger's steps, in the order a copy moves through them. */
export const LEDGER_STEPS = ['queued', 'sent', 'delivered', 'read', 'acknowledged'] as const;
export type LedgerStep = (typeof LEDGER_STEPS)[number];

export interface Translation {
  title: string;
  body: string;
  instructions?: string;
}

/** Who an alert or a roll-call reaches; parts combine as a union. */
export interface Target {
  areas?: number[];
  shapes?: Feature[];
  organisations?: number[];
  duty_stations?: number[];
  roles?: Role[];
  everyone?: boolean;
  fresh_within_secs?: number;
}

export interface AlertInput {
  translations: Record<string, Translation>;
  default_language?: string;
  severity?: string;
  urgency?: string;
  certainty?: string;
  category?: string;
  security_level?: number;
  expires_at?: string;
  target?: Target;
  sms_fallback?: boolean;
  template_id?: number;
}

export interface Preview {
  total: number;
  by_reason: Record<string, number>;
  by_organisation: Record<string, number>;
  stale_positions: number;
  fresh_within_secs: number;
}

export type LedgerCounts = Record<LedgerStep | 'sms_messages' | 'sms_segments', number>;

export interface Alert {
  id: number;
  org_id: number;
  sender_id: number | null;
  source: string;
  msg_type: string;
  severity: string;
  urgency: string;
  certainty: string;
  category: string;
  security_level: number | null;
  default_language: string;
  translations: Record<string, Translation>;
  target: Target;
  recipient_count: number;
  created_at: string;
  expires_at: string;
  cancelled_at: string | null;
  counts: LedgerCounts;
}

export interface RecipientRow {
  user_id: number;
  name: string;
  org_id: number;
  reasons: string;
  state: LedgerStep;
  channel: string | null;
  sent_at: string | null;
  delivered_at: string | null;
  read_at: string | null;
  acknowledged_at: string | null;
  last_error: string | null;
}

export interface AlertTemplate {
  id: number;
  org_id: number;
  name: string;
  content: Partial<AlertInput>;
}

export interface DutyStation {
  id: number;
  name: string;
  country_code: string;
}

export type RollcallCounts = Partial<Record<'safe' | 'need_help' | 'no_answer' | 'unreachable', number>>;

export interface Board {
  total: number;
  safe: number;
  need_help: number;
  no_answer: number;
  unreachable: number;
  by_organisation: Record<string, RollcallCounts>;
  by_area: Array<{ area_id: number | null; name: string; counts: RollcallCounts }>;
  counted_at: string | null;
}

export interface Rollcall {
  id: number;
  org_id: number;
  title: string;
  message: string;
  target: Target;
  people_count: number;
  created_at: string;
  closed_at: string | null;
  conversation_id: number | null;
  board: Board;
}

export interface RollcallPerson {
  user_id: number;
  dependant_id: number;
  name: string;
  phone: string | null;
  org_id: number;
  reasons: string;
  status: 'safe' | 'need_help' | 'no_answer';
  note: string | null;
  lat: number | null;
  lon: number | null;
  answered_at: string | null;
  answered_via: string | null;
  accounted_by: number | null;
  accounted_how: string | null;
  delivered_at: string | null;
  reminders_sent: number;
}

export interface MyRollcall {
  id: number;
  title: string;
  message: string;
  created_at: string;
  closed_at: string | null;
  rows: RollcallPerson[];
}

export interface SosCase {
  id: number;
  org_id: number;
  user_id: number;
  user_name: string;
  phone: string | null;
  status: 'open' | 'claimed' | 'closed';
  position: { lat: number; lon: number; accuracy_m: number | null; at: string; source: string } | null;
  claimed_by: number | null;
  claimed_at: string | null;
  conversation_id: number | null;
  opened_at: string;
  closed_at: string | null;
  outcome: string | null;
  timeline?: Array<{ at: string; actor_id: number | null; kind: string; detail: string }>;
}

export interface ChatMessage {
  conversation_id: number;
  seq: number;
  sender_id: number;
  sender_name: string;
  client_id: string;
  body: string;
  sent_at: string;
}

export interface ConversationDetail {
  id: number;
  title: string;
  kind: string;
  closed_at: string | null;
  last_seq: number;
  participants: Array<{ user_id: number; name: string; via: string; last_delivered_seq: number; last_read_seq: number; online: boolean }>;
}

const q = (params: Record<string, string | number | boolean | undefined>) => {
  const parts = Object.entries(params).filter(([, v]) => v !== undefined).map(([k, v]) => `${k}=${encodeURIComponent(String(v))}`);
  return parts.length ? `?${parts.join('&')}` : '';
};

export const ops = {
  templates: () => request<AlertTemplate[]>('GET', '/alert-templates'),
  dutyStations: () => request<DutyStation[]>('GET', '/duty-stations'),
  previewAlert: (target: Target) => request<Preview>('POST', '/alerts/preview', target),
  sendAlert: (input: AlertInput) => request<Alert>('POST', '/alerts', input),
  alerts: () => request<Alert[]>('GET', '/alerts?limit=100'),
  alert: (id: number) => request<Alert>('GET', `/alerts/${id}`),
  recipients: (id: number, state?: string) => request<RecipientRow[]>('GET', `/alerts/${id}/recipients${q({ state, limit: 500 })}`),
  cancelAlert: (id: number) => request<Alert>('POST', `/alerts/${id}/cancel`, {}),
  receipt: (id: number, state: 'delivered' | 'read' | 'acknowledged') => request<void>('POST', `/alerts/${id}/receipt`, { state }),
  myAlerts: () => request<Array<{ alert: Record<string, unknown>; state: string; reasons: string[] }>>('GET', '/me/alerts?limit=100'),
  rollcalls: (open?: boolean) => request<Rollcall[]>('GET', `/rollcalls${q({ open })}`),
  rollcall: (id: number) => request<Rollcall>('GET', `/rollcalls/${id}`),
  startRollcall: (input: { title: string; message?: string; target: Target; reminder_every_secs?: number }) => request<Rollcall>('POST', '/rollcalls', input),
  rollcallPeople: (id: number, status?: string) => request<RollcallPerson[]>('GET', `/rollcalls/${id}/people${q({ status })}`),
  account: (id: number, body: { user_id: number; dependant_id?: number; status: 'safe' | 'need_help'; how: string; note?: string }) =>
    request<void>('POST', `/rollcalls/${id}/account`, body),
  closeRollcall: (id: number) => request<Rollcall>('POST', `/rollcalls/${id}/close`, {}),
  myRollcalls: () => request<MyRollcall[]>('GET', '/me/rollcalls'),
  answer: (id: number, body: { status: 'safe' | 'need_help'; note?: string; position?: Fix; dependant_id?: number }) =>
    request<void>('POST', `/rollcalls/${id}/answer`, body),
  sosCases: (status?: string) => request<SosCase[]>('GET', `/sos${q({ status })}`),
  sosCase: (id: number) => request<SosCase>('GET', `/sos/${id}`),
  pressSos: (body: { position?: Fix; share_location?: boolean; note?: string }) => request<SosCase>('POST', '/sos', body),
  claim: (id: number, take_over: boolean) => request<SosCase>('POST', `/sos/${id}/claim`, { take_over }),
  sosNote: (id: number, text: string) => request<SosCase>('POST', `/sos/${id}/notes`, { text }),
  closeSos: (id: number, outcome: string) => request<SosCase>('POST', `/sos/${id}/close`, { outcome }),
  conversation: (id: number) => request<ConversationDetail>('GET', `/conversations/${id}`),
  messages: (id: number, after = 0) => request<ChatMessage[]>('GET', `/conversations/${id}/messages${q({ after, limit: 500 })}`),
  sendMessage: (id: number, client_id: string, body: string) => request<ChatMessage>('POST', `/conversations/${id}/messages`, { client_id, body }),
  markRead: (id: number, seq: number) => request<void>('POST', `/conversations/${id}/read`, { seq, state: 'read' }),
  vapidKey: () => request<{ public_key: string }>('GET', '/push/vapid-public-key'),
  registerPush: (subscription: PushSubscriptionJSON) => request<unknown>('POST', '/push/subscriptions', subscription),
};

/** Fetches a file the API serves (CSV) with the session's token, as text. */
export async function fetchText(path: string): Promise<string> {
  const send = () => fetch(`/api/v1${path}`, { headers: access ? { authorization: `Bearer ${access}` } : {}, cache: 'no-store' });
  let res = await send();
  if (res.status === 401 && (await refresh())) res = await send();
  if (!res.ok) throw new ApiError(res.status, res.statusText, await res.text());
  return res.text();
}
