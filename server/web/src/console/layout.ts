// What the alerts, roll-call and SOS screens share: a list beside the chosen item, and the
// operations feed (live counts that reload the picture after a reconnect).

import { h } from '../ui';
import type { LiveEvent } from '../ws';
import type { ConsoleContext } from './main';

/** Fills `container` with a side list (heading, then `side`) and a scrolling detail pane. */
export function listAndDetail(container: HTMLElement, heading: string, side: Array<Node | null>, ...detail: Node[]): void {
  container.replaceChildren(h('div', { class: 'split' },
    h('aside', { class: 'panel' }, h('div', { class: 'panel-body' }, h('h1', {}, heading), ...side.filter((n): n is Node => n !== null))),
    h('div', { class: 'page' }, ...detail)));
}

/**
 * Follows the organisation's operations feed (alert progress, roll-call boards): `onEvent` for
 * each event, `reload` after every reconnection. Returns what stops listening.
 */
export function followOperations(ctx: ConsoleContext, onEvent: (e: LiveEvent) => void, reload: () => void): Array<() => void> {
  const unlisten = [ctx.socket.onEvent(onEvent), ctx.socket.onWelcome(reload)];
  ctx.socket.subscribe('operations', ctx.seesAll ? {} : { org_id: ctx.me.org_id });
  return unlisten;
}
