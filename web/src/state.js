// What every part of the page shares: the state, and the small DOM helpers.
export const $ = (id) => document.getElementById(id);
export const READ_ONLY = document.querySelector('meta[name="coop-access"]').content !== "full";
export const PHONE = window.matchMedia("(max-width: 767px)");

export function stored(key, fallback) {
  try { return localStorage.getItem(key) ?? fallback; } catch { return fallback; }
}
export function store(key, value) {
  try { localStorage.setItem(key, value); } catch { /* private mode: not remembered */ }
}

export const ui = {
  sessions: [], current: null, pty: 0, link: null, claim: false,
  mods: { ctrl: false, alt: false }, waiting: new Map(), blocked: new Map(), expired: false,
  theme: stored("coop.theme", "auto"),
};

export function connState(kind, text) {
  const el = $("conn");
  el.className = `conn ${kind}`;
  el.textContent = text;
}

let bannerTimer = null;
export function banner(text, ms = 5000) {
  const el = $("banner");
  el.textContent = text;
  el.hidden = false;
  clearTimeout(bannerTimer);
  bannerTimer = setTimeout(() => { el.hidden = true; }, ms);
}

export function ask(text, okLabel) {
  const dialog = $("confirm");
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = okLabel;
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

export async function api(method, path, body) {
  const response = await fetch(path, {
    method, headers: body ? { "Content-Type": "application/json" } : {},
    body: body ? JSON.stringify(body) : undefined, credentials: "same-origin",
  });
  const reply = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(reply.message || `${method} ${path}: ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return reply;
}

export function sessionPath(name, rest = "") {
  return `/api/sessions/${encodeURIComponent(name)}${rest}`;
}

// A button's (or form's) action: a failure shows in the banner instead of being lost.
export function onAction(target, action, event = "click") {
  const element = typeof target === "string" ? $(target) : target;
  element.addEventListener(event, async (e) => {
    try {
      await action(e);
    } catch (error) {
      banner(String(error.message || error));
    }
  });
}
