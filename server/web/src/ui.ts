// Small DOM helpers shared by the console and the staff app: element building, labelled
// fields, an announcement region for screen readers, dialogs, the language picker and sign-in.

import { ApiError, login } from './api';
import { LANGUAGES, language, onLanguageChange, setLanguage, t, type Key, type Lang } from './i18n';

type Child = Node | string | null | undefined | false;
type Attrs = Record<string, string | number | boolean | EventListener | null | undefined>;

/** Creates an element: attributes (`on…` are listeners, booleans toggle), then children. */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') el.addEventListener(name.slice(2), value);
    // Through the CSSOM: a style attribute would need 'unsafe-inline' in the CSP.
    else if (name === 'style') el.style.cssText = String(value);
    else if (value === true) el.setAttribute(name, '');
    else el.setAttribute(name, String(value));
  }
  append(el, ...children);
  return el;
}

/** Replaces an element's children, skipping the absent ones. */
export function fill(parent: Element, ...children: Child[]): void {
  parent.replaceChildren();
  append(parent, ...children);
}

export function append(parent: Node, ...children: Child[]): void {
  for (const c of children) if (c !== null && c !== undefined && c !== false) parent.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
}

let idCounter = 0;
export function uid(prefix = 'f'): string {
  return `${prefix}-${++idCounter}`;
}

/** A labelled form field: the label is tied to the control by id. */
export function field(label: string, control: HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement, hint?: string): HTMLElement {
  control.id ||= uid();
  const wrap = h('div', { class: 'field' }, h('label', { for: control.id }, label), control);
  if (hint) {
    const hintId = uid('hint');
    control.setAttribute('aria-describedby', hintId);
    wrap.append(h('p', { class: 'hint', id: hintId }, hint));
  }
  return wrap;
}

export function button(label: string, onclick: (e: Event) => void, attrs: Attrs = {}): HTMLButtonElement {
  return h('button', { type: 'button', ...attrs, onclick: onclick as EventListener }, label);
}

/** Says something to everyone: visibly, and to screen readers through a live region. */
export function announce(text: string, kind: 'info' | 'error' = 'info'): void {
  let region = document.getElementById('announcer');
  if (!region) {
    region = h('div', { id: 'announcer', class: 'announcer', role: 'status', 'aria-live': 'polite' });
    document.body.append(region);
  }
  const note = h('p', { class: `note ${kind}`, role: kind === 'error' ? 'alert' : null }, text);
  region.append(note);
  window.setTimeout(() => note.remove(), kind === 'error' ? 10_000 : 5_000);
}

/** What went wrong, for people: the server's detail and each issue it named. */
export function errorText(e: unknown): string {
  if (e instanceof ApiError) {
    if (e.status === 0) return t('error.network');
    if (e.status === 403) return `${t('error.forbidden')} ${e.detail}`;
    const issues = e.issues.map((i) => `${i.at}: ${i.reason}`).join('; ');
    return issues ? `${e.detail} (${issues})` : e.detail;
  }
  return e instanceof Error ? e.message : String(e);
}

export function reportError(e: unknown): void {
  announce(t('error.generic', { detail: errorText(e) }), 'error');
}

/** A modal dialog (native <dialog>: focus stays inside, Escape closes). Resolves on close. */
export function openDialog(title: string, body: Node, actions: HTMLButtonElement[] = []): { close: () => void; closed: Promise<void>; element: HTMLDialogElement } {
  const titleId = uid('dlg');
  const closeButton = button(t('close'), () => dlg.close(), { class: 'icon-button', 'aria-label': t('close') });
  closeButton.textContent = '×';
  const dlg = h('dialog', { 'aria-labelledby': titleId, class: 'dialog' },
    h('header', {}, h('h2', { id: titleId }, title), closeButton),
    body,
    actions.length ? h('footer', {}, ...actions) : null,
  );
  document.body.append(dlg);
  const closed = new Promise<void>((resolve) => dlg.addEventListener('close', () => {
    dlg.remove();
    resolve();
  }));
  dlg.showModal();
  return { close: () => dlg.close(), closed, element: dlg };
}

/** The language selector; re-rendering on change is the caller's `onLanguageChange`. */
export function languagePicker(): HTMLElement {
  const select = h('select', { class: 'lang', 'data-testid': 'language' },
    ...Object.entries(LANGUAGES).map(([code, name]) => h('option', { value: code, lang: code, selected: code === language() }, name)));
  select.addEventListener('change', () => setLanguage(select.value as Lang));
  return field(t('lang.label'), select);
}

/** A table with a caption and column headers (scope="col") for screen readers. */
export function table(caption: string, headers: string[], rows: Child[][], attrs: Attrs = {}): HTMLTableElement {
  return h('table', attrs,
    h('caption', {}, caption),
    h('thead', {}, h('tr', {}, ...headers.map((x) => h('th', { scope: 'col' }, x)))),
    h('tbody', {}, ...rows.map((r) => h('tr', {}, ...r.map((c) => h('td', {}, c))))),
  );
}

/** The sign-in screen; resolves once signed in. Re-renders in place when the language changes. */
export function signIn(root: HTMLElement, heading: Key): Promise<void> {
  return new Promise((resolve) => {
    let done = false;
    let typedEmail = '';
    const render = () => {
      if (done) return;
      const email = h('input', { type: 'email', name: 'email', autocomplete: 'username', required: true });
      email.value = typedEmail;
      email.addEventListener('input', () => (typedEmail = email.value));
      const password = h('input', { type: 'password', name: 'password', autocomplete: 'current-password', required: true });
      const status = h('p', { class: 'form-status', role: 'alert' });
      const submit = h('button', { type: 'submit', class: 'primary' }, t('login.submit'));
      const form = h('form', { class: 'login', 'aria-labelledby': 'login-title' },
        h('h1', { id: 'login-title' }, t(heading)),
        h('h2', {}, t('login.title')),
        field(t('login.email'), email),
        field(t('login.password'), password),
        submit,
        status,
      );
      form.addEventListener('submit', (e) => {
        e.preventDefault();
        submit.disabled = true;
        status.textContent = t('login.busy');
        login(email.value.trim(), password.value).then(
          () => {
            done = true;
            resolve();
          },
          (err: unknown) => {
            submit.disabled = false;
            status.textContent = t('login.failed', { detail: errorText(err) });
            password.select();
          },
        );
      });
      root.replaceChildren(h('main', { class: 'login-page' }, form, h('div', { class: 'login-lang' }, languagePicker())));
      email.focus();
    };
    onLanguageChange(render);
    render();
  });
}

/** Downloads text as a file (GeoJSON export). */
export function download(name: string, text: string, type: string): void {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = h('a', { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  window.setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** Reads a file the person picked. */
export function readFile(file: File): Promise<string> {
  return file.text();
}
