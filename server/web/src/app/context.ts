// What every tab of the staff app is given, and the shape of a tab.

import type { Fix, Me } from '../api';
import type { Key } from '../i18n';
import type { LiveSocket, SessionMessageStore } from '../ws';
import type { AlertStore } from './alert-store';

/** Sends the browser's positions while tracking is on (main.ts). */
export interface PositionSender {
  readonly running: boolean;
  status: string;
  start(): void;
  stop(): void;
  showIn(view: HTMLElement): void;
}

export interface AppContext {
  me: Me;
  socket: LiveSocket;
  inbox: SessionMessageStore;
  alerts: AlertStore;
  tracker: PositionSender;
  /** Started without the server (no network at start): screens show what is stored. */
  offline: boolean;
}

/** A tab of the app (or, with `tab: false`, a screen reached from another). */
export interface AppScreen {
  id: string;
  label: Key;
  tab?: boolean;
  render(ctx: AppContext, container: HTMLElement): void | Promise<void>;
  /** A count shown on the tab (unread messages). */
  badge?(ctx: AppContext): number;
}

/** One fix from the browser, or null when it gives none in time (or refuses). */
export function currentFix(timeoutMs = 10_000): Promise<Fix | null> {
  if (!('geolocation' in navigator)) return Promise.resolve(null);
  return new Promise((resolve) => {
    navigator.geolocation.getCurrentPosition(
      (pos) => resolve({
        lat: pos.coords.latitude,
        lon: pos.coords.longitude,
        accuracy_m: Number.isFinite(pos.coords.accuracy) ? pos.coords.accuracy : null,
        recorded_at: new Date(pos.timestamp).toISOString(),
      }),
      () => resolve(null),
      { enableHighAccuracy: true, maximumAge: 30_000, timeout: timeoutMs },
    );
  });
}
