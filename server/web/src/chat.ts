// One conversation (an SOS case's chat), for the console and the staff app alike: history over
// HTTP, new messages from the person's stored stream (kind `chat`), sending over the socket
// with a client id (acknowledged once stored; sent again with the same id after a drop), and
// read receipts both ways (docs/PROTOCOL.md, "Chat").

import { ops, type ChatMessage } from './api';
import { formatTime, t } from './i18n';
import { h } from './ui';
import type { InboxMessage, LiveEvent, LiveSocket } from './ws';

/** Where a chat view hears about stored messages and live events. */
export interface ChatFeed {
  socket: LiveSocket;
  onMessage(listener: (m: InboxMessage) => void): () => void;
}

interface Pending {
  clientId: string;
  body: string;
  failed: boolean;
}

let counter = 0;

/** A client id unique per sender: time, a counter and randomness (PROTOCOL.md's alphabet). */
export function newClientId(): string {
  const random = Math.floor(Math.random() * 0xffffff).toString(36);
  return `w${Date.now().toString(36)}-${(++counter).toString(36)}-${random}`;
}

export class ChatView {
  readonly element: HTMLElement;
  private readonly log = h('ol', { class: 'chat-log', role: 'log', 'aria-live': 'polite', 'data-testid': 'chat-log' });
  private readonly input = h('textarea', { rows: '2', maxlength: '4000', 'data-testid': 'chat-input' });
  private readonly status = h('p', { class: 'form-status', role: 'alert' });
  private readonly messages = new Map<number, ChatMessage>();
  private readonly pending: Pending[] = [];
  private readonly unlisten: Array<() => void> = [];
  /** The highest seq another participant has read (for "read" marks on one's own messages). */
  private othersRead = 0;
  private closed = false;

  constructor(private readonly conversationId: number, private readonly myId: number, private readonly feed: ChatFeed, title: string) {
    const send = h('button', { type: 'submit', class: 'primary', 'data-testid': 'chat-send' }, t('chat.send'));
    const form = h('form', { class: 'chat-form' }, h('label', { for: (this.input.id = `chat-input-${conversationId}`) }, t('chat.message')), this.input, send, this.status);
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      void this.send();
    });
    this.input.addEventListener('keydown', (e) => {
      // Enter sends, Shift+Enter starts a new line.
      if (e.key === 'Enter' && !e.shiftKey) {
        e.preventDefault();
        void this.send();
      }
    });
    this.element = h('section', { class: 'chat', 'aria-label': title, 'data-conversation-id': conversationId }, h('h3', {}, title), this.log, form);
    this.unlisten.push(feed.onMessage((m) => this.onMessage(m)));
    this.unlisten.push(feed.socket.onEvent((e) => this.onEvent(e)));
    this.unlisten.push(feed.socket.onWelcome(() => void this.catchUp()));
  }

  /** Loads the history and any participant's receipts. */
  async load(): Promise<void> {
    const [history, detail] = await Promise.all([ops.messages(this.conversationId), ops.conversation(this.conversationId).catch(() => null)]);
    for (const m of history) this.messages.set(m.seq, m);
    if (detail) {
      this.closed = detail.closed_at !== null;
      this.othersRead = Math.max(0, ...detail.participants.filter((p) => p.user_id !== this.myId).map((p) => p.last_read_seq));
    }
    this.render();
    this.markRead();
  }

  dispose(): void {
    this.unlisten.forEach((u) => u());
  }

  focus(): void {
    this.input.focus();
  }

  private async catchUp(): Promise<void> {
    const last = Math.max(0, ...this.messages.keys());
    try {
      for (const m of await ops.messages(this.conversationId, last)) this.messages.set(m.seq, m);
      this.render();
      // What could not go while offline goes now, with the same client ids.
      for (const p of this.pending.filter((x) => x.failed)) void this.deliver(p);
    } catch {
      // Still offline: the next welcome tries again.
    }
  }

  private onMessage(m: InboxMessage): void {
    if (m.kind === 'chat_closed' && m.payload.conversation_id === this.conversationId) {
      this.closed = true;
      this.render();
      return;
    }
    if (m.kind !== 'chat') return;
    const c = m.payload as unknown as ChatMessage;
    if (c.conversation_id !== this.conversationId) return;
    this.messages.set(c.seq, c);
    const i = this.pending.findIndex((p) => p.clientId === c.client_id && c.sender_id === this.myId);
    if (i >= 0) this.pending.splice(i, 1);
    this.render();
    if (c.sender_id !== this.myId) this.markRead();
  }

  private onEvent(e: LiveEvent): void {
    if (e.event !== 'chat_receipt' || e.conversation_id !== this.conversationId || e.user_id === this.myId) return;
    const read = Number(e.read_seq ?? 0);
    if (read > this.othersRead) {
      this.othersRead = read;
      this.render();
    }
  }

  /** Tells the others this person has seen everything shown, when the chat is on screen. */
  private markRead(): void {
    const last = Math.max(0, ...this.messages.keys());
    if (!last || !this.element.isConnected || this.element.closest('[hidden]')) return;
    if (!this.feed.socket.chatReceipt(this.conversationId, last, 'read')) void ops.markRead(this.conversationId, last).catch(() => undefined);
  }

  private async send(): Promise<void> {
    const body = this.input.value.trim();
    if (!body) return;
    this.input.value = '';
    this.status.textContent = '';
    const p: Pending = { clientId: newClientId(), body, failed: false };
    this.pending.push(p);
    this.render();
    await this.deliver(p);
  }

  private async deliver(p: Pending): Promise<void> {
    p.failed = false;
    try {
      const ack = this.feed.socket.online
        ? await this.feed.socket.sendChat(this.conversationId, p.clientId, p.body)
        : await ops.sendMessage(this.conversationId, p.clientId, p.body);
      const i = this.pending.indexOf(p);
      if (i >= 0) this.pending.splice(i, 1);
      // The stored copy arrives in the stream too; until then the acknowledged text stands in.
      if (!this.messages.has(ack.seq)) {
        this.messages.set(ack.seq, { conversation_id: this.conversationId, seq: ack.seq, sender_id: this.myId, sender_name: '', client_id: p.clientId, body: p.body, sent_at: new Date().toISOString() });
      }
    } catch (e) {
      const code = e instanceof Error ? e.message : String(e);
      if (code === 'closed' || code === 'forbidden' || code === 'invalid') {
        this.pending.splice(this.pending.indexOf(p), 1);
        this.status.textContent = t(code === 'closed' ? 'chat.closed' : 'chat.refused');
      } else {
        p.failed = true;
        this.status.textContent = t('chat.will_retry');
      }
    }
    this.render();
  }

  private render(): void {
    const stick = this.log.scrollTop + this.log.clientHeight >= this.log.scrollHeight - 20;
    const items = [...this.messages.values()].sort((a, b) => a.seq - b.seq).map((m) => {
      const mine = m.sender_id === this.myId;
      return h('li', { class: `chat-msg ${mine ? 'mine' : 'theirs'}`, 'data-seq': m.seq },
        h('p', { class: 'chat-meta' }, mine ? t('chat.you') : m.sender_name, ' · ', formatTime(m.sent_at), mine && m.seq <= this.othersRead ? ` · ${t('chat.read')}` : ''),
        h('p', { class: 'chat-body', dir: 'auto' }, m.body));
    });
    const waiting = this.pending.map((p) => h('li', { class: 'chat-msg mine pending' },
      h('p', { class: 'chat-meta' }, t('chat.you'), ' · ', p.failed ? t('chat.not_sent') : t('chat.sending')),
      h('p', { class: 'chat-body', dir: 'auto' }, p.body)));
    this.log.replaceChildren(...items, ...waiting);
    if (!items.length && !waiting.length) this.log.append(h('li', { class: 'chat-empty' }, t('chat.empty')));
    if (this.closed) {
      this.log.append(h('li', { class: 'chat-empty' }, t('chat.closed')));
      this.input.disabled = true;
    }
    if (stick) this.log.scrollTop = this.log.scrollHeight;
  }
}
