// The WebSocket client (docs/PROTOCOL.md): hello with the access token and the last message
// sequence number handled, numbered messages delivered once and in order, live events for
// subscribers, position uploads acknowledged by reference, reconnection with backoff and jitter.

import { accessToken, refresh, type Fix } from './api';

/** A stored, numbered message to this person (`type: "message"`). */
export interface InboxMessage {
  seq: number;
  kind: string;
  at: string;
  payload: Record<string, unknown>;
}

/** A live event for a subscriber (`type: "event"`). */
export interface LiveEvent {
  event: string;
  subject?: 'user' | 'asset';
  id?: number;
  org_id?: number;
  lat?: number;
  lon?: number;
  accuracy_m?: number | null;
  recorded_at?: string;
  [key: string]: unknown;
}

export interface Welcome {
  user_id: number;
  org_id: number;
  roles: string[];
  last_seq: number;
  heartbeat_secs: number;
}

/** Where handled messages and the last sequence number are kept between connections. */
export interface MessageStore {
  lastSeq(): number;
  /** Called once per message, in order; the sequence number counts as handled afterwards. */
  add(message: InboxMessage): void;
}

/** The server's answer to `chat_send`. */
export interface ChatAck {
  conversation_id: number;
  seq: number;
  client_id: string;
  duplicate: boolean;
}

export type SocketState = 'connecting' | 'online' | 'offline' | 'closed';

/** Close codes after which reconnecting cannot help (see PROTOCOL.md). */
const FATAL_CLOSES = new Set([1002]);

/** Exponential backoff with full jitter, capped at 30 s. */
export function backoffMs(attempt: number, random: () => number = Math.random): number {
  const ceiling = Math.min(30_000, 500 * 2 ** Math.min(attempt, 10));
  return Math.round(250 + random() * ceiling);
}

function listen<T>(list: Array<(x: T) => void>, listener: (x: T) => void): () => void {
  list.push(listener);
  return () => {
    const i = list.indexOf(listener);
    if (i >= 0) list.splice(i, 1);
  };
}

export class LiveSocket {
  private ws: WebSocket | null = null;
  private attempt = 0;
  private timer: number | undefined;
  private stopped = false;
  private welcomed = false;
  private refCounter = 0;
  private readonly pending = new Map<string, { resolve: (n: number) => void; reject: (e: Error) => void }>();
  private readonly pendingChat = new Map<string, { resolve: (a: ChatAck) => void; reject: (e: Error) => void }>();
  private readonly subscriptions = new Map<string, Record<string, unknown>>();
  private readonly eventListeners: Array<(e: LiveEvent) => void> = [];
  private readonly welcomeListeners: Array<(w: Welcome) => void> = [];
  private readonly stateListeners: Array<(s: SocketState) => void> = [];

  constructor(private readonly store: MessageStore) {}

  /** Listens to live events; returns the function that stops listening. */
  onEvent(listener: (e: LiveEvent) => void): () => void {
    return listen(this.eventListeners, listener);
  }

  /** After every (re)connection: the place to reload what live events may have missed. */
  onWelcome(listener: (w: Welcome) => void): () => void {
    return listen(this.welcomeListeners, listener);
  }

  /** Whether the socket is connected and welcomed. */
  get online(): boolean {
    return this.welcomed;
  }

  onState(listener: (s: SocketState) => void): void {
    this.stateListeners.push(listener);
  }

  start(): void {
    this.stopped = false;
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    window.clearTimeout(this.timer);
    this.ws?.close(1000);
    this.ws = null;
    this.setState('closed');
  }

  /** Subscribes now and after every reconnection. */
  subscribe(topic: string, extra: Record<string, unknown> = {}): void {
    this.subscriptions.set(topic, extra);
    this.send({ type: 'subscribe', topic, ...extra });
  }

  /**
   * Sends a chat message; resolves with its place in the conversation once stored (`chat_ack`).
   * A refusal rejects with the server's code (`closed`, `forbidden`…).
   */
  sendChat(conversationId: number, clientId: string, body: string): Promise<ChatAck> {
    const ref = `c-${Date.now().toString(36)}-${++this.refCounter}`;
    return new Promise((resolve, reject) => {
      if (!this.send({ type: 'chat_send', ref, conversation_id: conversationId, client_id: clientId, body })) {
        reject(new Error('offline'));
        return;
      }
      this.pendingChat.set(ref, { resolve, reject });
      window.setTimeout(() => {
        if (this.pendingChat.delete(ref)) reject(new Error('no acknowledgement'));
      }, 15_000);
    });
  }

  /** Tells the server a conversation was delivered or read up to `seq` (best effort). */
  chatReceipt(conversationId: number, seq: number, state: 'delivered' | 'read'): boolean {
    return this.send({ type: 'chat_receipt', conversation_id: conversationId, seq, state });
  }

  /** Reports an alert delivered, read or acknowledged over the socket (best effort). */
  alertReceipt(alertId: number, state: 'delivered' | 'read' | 'acknowledged'): boolean {
    return this.send({ type: 'receipt', alert_id: alertId, state });
  }

  /** Sends fixes; resolves with the number accepted once the server has stored them. */
  sendPositions(fixes: Fix[]): Promise<number> {
    const ref = `p-${Date.now().toString(36)}-${++this.refCounter}`;
    return new Promise((resolve, reject) => {
      if (!this.send({ type: 'position', ref, fixes })) {
        reject(new Error('offline'));
        return;
      }
      this.pending.set(ref, { resolve, reject });
      window.setTimeout(() => {
        if (this.pending.delete(ref)) reject(new Error('no acknowledgement'));
      }, 15_000);
    });
  }

  private send(message: object): boolean {
    if (this.ws?.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(message));
    return true;
  }

  private setState(state: SocketState): void {
    this.welcomed = state === 'online';
    this.stateListeners.forEach((l) => l(state));
  }

  private connect(): void {
    const token = accessToken();
    if (this.stopped || !token) return;
    this.setState('connecting');
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const ws = new WebSocket(`${scheme}://${location.host}/api/v1/ws`);
    this.ws = ws;
    ws.onopen = () => ws.send(JSON.stringify({ type: 'hello', token, last_seq: this.store.lastSeq() }));
    ws.onmessage = (e) => this.receive(e.data);
    ws.onclose = (e) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.pending.forEach((p) => p.reject(new Error('connection closed')));
      this.pending.clear();
      this.pendingChat.forEach((p) => p.reject(new Error('connection closed')));
      this.pendingChat.clear();
      if (this.stopped) return;
      this.setState('offline');
      if (FATAL_CLOSES.has(e.code)) return;
      void this.retry(e.code);
    };
  }

  private async retry(code: number): Promise<void> {
    // 4001: the token expired or the session ended; a refresh tells which.
    if (code === 4001 && !(await refresh())) return;
    const delay = backoffMs(this.attempt++);
    this.timer = window.setTimeout(() => this.connect(), delay);
  }

  private receive(data: unknown): void {
    if (typeof data !== 'string') return;
    let msg: { type?: string; [k: string]: unknown };
    try {
      msg = JSON.parse(data);
    } catch {
      return;
    }
    switch (msg.type) {
      case 'welcome': {
        this.attempt = 0;
        this.setState('online');
        for (const [topic, extra] of this.subscriptions) this.send({ type: 'subscribe', topic, ...extra });
        this.welcomeListeners.forEach((l) => l(msg as unknown as Welcome));
        break;
      }
      case 'message': {
        const m = msg as unknown as InboxMessage;
        // Resume may overlap what was already handled: skip by sequence number.
        if (m.seq > this.store.lastSeq()) this.store.add(m);
        break;
      }
      case 'event':
        this.eventListeners.forEach((l) => l(msg as unknown as LiveEvent));
        break;
      // The operations topic's counts come as their own message types: handed on as events.
      case 'alert_progress':
      case 'rollcall_board':
        this.eventListeners.forEach((l) => l({ ...msg, event: msg.type } as LiveEvent));
        break;
      case 'chat_ack': {
        const p = this.pendingChat.get(String(msg.ref));
        this.pendingChat.delete(String(msg.ref));
        p?.resolve(msg as unknown as ChatAck);
        break;
      }
      case 'ack': {
        const p = this.pending.get(String(msg.ref));
        this.pending.delete(String(msg.ref));
        p?.resolve(Number(msg.accepted ?? 0) + Number(msg.duplicates ?? 0));
        break;
      }
      case 'error': {
        const ref = String(msg.ref);
        const p = msg.ref === undefined || msg.ref === null ? undefined : this.pending.get(ref) ?? this.pendingChat.get(ref);
        if (p) {
          this.pending.delete(ref);
          this.pendingChat.delete(ref);
          p.reject(new Error(String(msg.code ?? 'error')));
        }
        break;
      }
      default:
        break;
    }
  }
}

/** Messages kept for this tab's session (the staff app also keeps alerts in IndexedDB: app/alert-store.ts). */
export class SessionMessageStore implements MessageStore {
  private readonly key: string;
  private messages: InboxMessage[];
  private readonly listeners: Array<(m: InboxMessage) => void> = [];

  constructor(userId: number, private readonly cap = 500) {
    this.key = `vigil.inbox.${userId}`;
    try {
      this.messages = JSON.parse(sessionStorage.getItem(this.key) ?? '[]') as InboxMessage[];
    } catch {
      this.messages = [];
    }
  }

  lastSeq(): number {
    return this.messages.at(-1)?.seq ?? Number(sessionStorage.getItem(`${this.key}.seq`) ?? 0);
  }

  add(message: InboxMessage): void {
    this.messages.push(message);
    if (this.messages.length > this.cap) this.messages.splice(0, this.messages.length - this.cap);
    sessionStorage.setItem(this.key, JSON.stringify(this.messages));
    sessionStorage.setItem(`${this.key}.seq`, String(message.seq));
    this.listeners.forEach((l) => l(message));
  }

  all(): readonly InboxMessage[] {
    return this.messages;
  }

  /** The last message the person has had on screen (for the unread count). */
  get seenSeq(): number {
    return Number(sessionStorage.getItem(`${this.key}.seen`) ?? 0);
  }

  markSeen(): void {
    sessionStorage.setItem(`${this.key}.seen`, String(this.lastSeq()));
  }

  onAdd(listener: (m: InboxMessage) => void): () => void {
    return listen(this.listeners, listener);
  }
}

/**
 * For the console, which keeps no inbox: remembers how far it has read and hands each message
 * to its listeners (the SOS inbox and its chat). A new tab starts from 0, so it is given the
 * person's whole stream again: listeners key what they keep (cases by id, chat by seq).
 */
export class SeqOnlyStore implements MessageStore {
  private seq = 0;
  private readonly listeners: Array<(m: InboxMessage) => void> = [];
  lastSeq(): number {
    return this.seq;
  }
  add(message: InboxMessage): void {
    this.seq = message.seq;
    this.listeners.forEach((l) => l(message));
  }
  /** Listens to stored messages; returns the function that stops listening. */
  onAdd(listener: (m: InboxMessage) => void): () => void {
    return listen(this.listeners, listener);
  }
}
