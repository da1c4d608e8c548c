// coop's page: the session list, xterm.js terminals over /ws, and the phone's key bar and
// compose box. It speaks only the HTTP API of `coop serve` (docs/web.md).
import { Terminal } from "@xterm/xterm";
import { FitAddon } from "@xterm/addon-fit";
import { WebLinksAddon } from "@xterm/addon-web-links";
import { ClipboardAddon } from "@xterm/addon-clipboard";

const $ = (id) => document.getElementById(id);
const READ_ONLY = document.querySelector('meta[name="coop-access"]').content !== "full";
const PHONE = window.matchMedia("(max-width: 767px)");
const encoder = new TextEncoder();
const PASTE_START = "\x1b[200~";
const PASTE_END = "\x1b[201~";
const ACK_EVERY = 64 * 1024; // the server pauses past 512 KiB unacknowledged (docs/web.md)

const THEMES = {
  dark: { background: "#111418", foreground: "#e6e6e6", cursor: "#7fd18b", selectionBackground: "#3a4a5a" },
  light: { background: "#ffffff", foreground: "#1f2328", cursor: "#1a7f37", selectionBackground: "#b6d3f2",
           black: "#24292f", white: "#d0d7de", brightWhite: "#8c959f", yellow: "#9a6700", brightYellow: "#7d4e00" },
};

function stored(key, fallback) {
  try { return localStorage.getItem(key) ?? fallback; } catch { return fallback; }
}
function store(key, value) {
  try { localStorage.setItem(key, value); } catch { /* private mode: not remembered */ }
}

const ui = {
  sessions: [], current: null, pty: 0, link: null, claim: false,
  mods: { ctrl: false, alt: false }, waiting: new Map(), blocked: new Map(),
  theme: stored("coop.theme", "auto"),
};

// -- the terminal --------------------------------------------------------------------
const term = new Terminal({
  fontSize: Number(stored("coop.font", PHONE.matches ? 12 : 14)),
  fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace',
  cursorBlink: true, scrollback: 5000, allowProposedApi: true, macOptionIsMeta: true,
  disableStdin: READ_ONLY,
});
const fit = new FitAddon();
term.loadAddon(fit);
term.loadAddon(new WebLinksAddon());
term.loadAddon(new ClipboardAddon()); // OSC 52: the agent's copies land in this device's clipboard
term.open($("terminal"));
term.onData((data) => sendInput(data));
term.onBinary((data) => ui.link?.send(Uint8Array.from(data, (c) => c.charCodeAt(0))));
$("term-wrap").addEventListener("click", () => term.focus()); // tap to focus

function effectiveTheme() {
  if (ui.theme !== "auto") return ui.theme;
  return window.matchMedia("(prefers-color-scheme: light)").matches ? "light" : "dark";
}
function applyTheme() {
  if (ui.theme === "auto") delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = ui.theme;
  term.options.theme = THEMES[effectiveTheme()];
  $("theme").title = `Theme: ${ui.theme}`;
}

// -- one terminal connection, reconnecting on its own -----------------------------------
class Link {
  constructor(session, pty) {
    this.session = session;
    this.pty = pty;
    this.attempt = 0;
    this.closed = false;
    this.connect();
  }

  connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const query = new URLSearchParams({ session: this.session, pty: String(this.pty), flow: "1" });
    const ws = new WebSocket(`${scheme}//${location.host}/ws?${query}`);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.fresh = true; // the first data frame repaints the whole screen
    this.done = 0;
    this.acked = 0;
    ws.onopen = () => {
      this.attempt = 0;
      connState("up", "live");
      // Nobody else is looking: a phone may as well have the size of its own screen.
      if (PHONE.matches && !ui.claim && watchers(this.session, this.pty) === 0) setClaim(true);
      this.sendSize();
    };
    ws.onmessage = (event) => {
      if (typeof event.data === "string") this.control(JSON.parse(event.data));
      else this.data(new Uint8Array(event.data));
    };
    ws.onclose = () => {
      if (this.ws === ws && !this.closed) this.retry();
    };
  }

  data(bytes) {
    if (this.fresh) {
      term.reset();
      this.fresh = false;
    }
    term.write(bytes, () => this.processed(bytes.length));
  }

  // Flow control: tell the server what xterm.js has really drawn, so a slow phone is
  // skipped ahead with a snapshot instead of drowning in queued output.
  processed(n) {
    this.done += n;
    if (this.done - this.acked >= ACK_EVERY) this.ack();
    else if (!this.ackTimer) this.ackTimer = setTimeout(() => this.ack(), 40);
  }

  ack() {
    clearTimeout(this.ackTimer);
    this.ackTimer = null;
    if (this.done > this.acked && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({ type: "ack", bytes: this.done }));
      this.acked = this.done;
    }
  }

  control(message) {
    switch (message.type) {
      case "blocked": showBlocked(message.message); break;
      case "confirm_ctrl_c": confirmCtrlC(); break;
      case "resync": this.fresh = true; break;
      case "size": follow(message.rows, message.cols); break;
      case "pty_exited": banner(`This terminal's program exited (code ${message.code}).`); break;
      case "pty_restarting": banner("The agent is restarting…", 3000); break;
      case "error": banner(message.message || "error"); break;
      default: break;
    }
  }

  retry() {
    const delay = Math.min(8000, 250 * 2 ** this.attempt);
    this.attempt += 1;
    connState("down", `reconnecting in ${Math.round(delay / 100) / 10}s`);
    this.timer = setTimeout(async () => {
      await refresh();
      const session = ui.sessions.find((s) => s.name === this.session);
      if (this.closed) return;
      if (!session) {
        connState("down", "session ended");
        return;
      }
      this.connect();
    }, delay);
  }

  send(data) {
    if (this.ws.readyState !== WebSocket.OPEN || READ_ONLY) return;
    this.ws.send(typeof data === "string" ? encoder.encode(data) : data);
  }

  sendSize() {
    if (READ_ONLY || (PHONE.matches && !ui.claim)) return;
    fit.fit();
    if (this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({ type: "resize", rows: term.rows, cols: term.cols }));
    }
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    clearTimeout(this.ackTimer);
    this.ws.close();
  }
}

// A phone follows the agent's size instead of shrinking it for everyone (SPEC §10),
// scrolling sideways, until "fit" claims the size.
function setClaim(claim) {
  ui.claim = claim;
  $("fit").setAttribute("aria-pressed", String(claim));
}

function watchers(session, id) {
  const pty = ui.sessions.find((s) => s.name === session)?.ptys?.find((p) => p.id === id);
  return pty ? Object.values(pty.clients || {}).reduce((a, b) => a + b, 0) : 0;
}

function follow(rows, cols) {
  if (PHONE.matches && !ui.claim && rows > 0 && cols > 0) term.resize(cols, rows);
}

function connState(kind, text) {
  const el = $("conn");
  el.className = `conn ${kind}`;
  el.textContent = text;
}

let bannerTimer = null;
function banner(text, ms = 5000) {
  const el = $("banner");
  el.textContent = text;
  el.hidden = false;
  clearTimeout(bannerTimer);
  bannerTimer = setTimeout(() => { el.hidden = true; }, ms);
}

// The banner fades; the tab keeps a ⚠ for a minute so a glance later still tells.
const BLOCKED_MARK_MS = 60000;
function showBlocked(text) {
  banner(text || "⚠ Blocked from web. Use a local terminal to exit.");
  const key = `${ui.current}/${ui.pty}`;
  ui.blocked.set(key, Date.now());
  renderTabs();
  setTimeout(renderTabs, BLOCKED_MARK_MS + 100);
}

async function confirmCtrlC() {
  if (await ask("Send Ctrl+C to the agent? It may cancel what the agent is doing.", "Send")) {
    ui.link?.ws.send(JSON.stringify({ type: "confirm_ctrl_c" }));
  }
}

// -- input: the keyboard, the key bar, the compose box ----------------------------------
function withModifiers(data) {
  let out = data;
  if (ui.mods.ctrl && out.length === 1) {
    const code = out.toUpperCase().charCodeAt(0);
    if (code >= 64 && code <= 95) out = String.fromCharCode(code - 64);
    else if (out === " ") out = "\x00";
  }
  if (ui.mods.alt) out = "\x1b" + out;
  setMods(false, false);
  return out;
}

function setMods(ctrl, alt) {
  ui.mods = { ctrl, alt };
  for (const button of document.querySelectorAll("#keybar [data-mod]")) {
    button.setAttribute("aria-pressed", String(ui.mods[button.dataset.mod]));
  }
}

function sendInput(data) {
  if (!ui.link) return;
  ui.link.send(withModifiers(data));
  if (!(PHONE.matches && !ui.claim)) ui.link.sendSize(); // typing makes this size the latest
}

function arrow(letter) {
  if (ui.mods.ctrl || ui.mods.alt) {
    const mod = ui.mods.ctrl ? 5 : 3;
    setMods(false, false);
    return `\x1b[1;${mod}${letter}`;
  }
  return term.modes.applicationCursorKeysMode ? `\x1bO${letter}` : `\x1b[${letter}`;
}

const KEYS = {
  esc: () => "\x1b", tab: () => "\t", "ctrl-c": () => "\x03",
  up: () => arrow("A"), down: () => arrow("B"), right: () => arrow("C"), left: () => arrow("D"),
};

for (const button of document.querySelectorAll("#keybar button")) {
  // Keep the focus (and the phone's keyboard) where it is.
  button.addEventListener("pointerdown", (event) => event.preventDefault());
  button.addEventListener("click", async () => {
    if (button.dataset.mod) {
      const mods = { ...ui.mods, [button.dataset.mod]: !ui.mods[button.dataset.mod] };
      setMods(mods.ctrl, mods.alt);
      return;
    }
    const key = button.dataset.key;
    if (key === "paste") {
      await pasteFromClipboard();
      return;
    }
    const sequence = KEYS[key]();
    ui.link?.send(key === "up" || key === "down" || key === "left" || key === "right"
      ? sequence : withModifiers(sequence));
  });
}

async function pasteFromClipboard() {
  try {
    const text = await navigator.clipboard.readText();
    if (text) term.paste(text);
  } catch {
    // No clipboard access (plain http on the LAN): the compose box takes a long-press paste.
    $("compose-text").focus();
    banner("Paste into the box below, then Send.", 3000);
  }
}

// The box's text goes as one paste — bracketed when the program asked for it (as agents
// do), so a multi-line prompt is not submitted line by line — then Enter.
function sendCompose() {
  const box = $("compose-text");
  const text = box.value.replace(/\r?\n/g, "\r");
  if (!ui.link) return;
  const paste = term.modes.bracketedPasteMode ? `${PASTE_START}${text}${PASTE_END}` : text;
  ui.link.send(text ? `${paste}\r` : "\r");
  box.value = "";
}
$("compose").addEventListener("submit", (event) => {
  event.preventDefault();
  sendCompose();
});
$("compose-text").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    sendCompose();
  }
});

// -- sessions --------------------------------------------------------------------------
async function api(method, path, body) {
  const response = await fetch(path, {
    method, headers: body ? { "Content-Type": "application/json" } : {},
    body: body ? JSON.stringify(body) : undefined, credentials: "same-origin",
  });
  const reply = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(reply.message || `${method} ${path}: ${response.status}`);
  return reply;
}

function clientsText(ptys) {
  const total = {};
  for (const pty of ptys) {
    for (const [kind, n] of Object.entries(pty.clients || {})) total[kind] = (total[kind] || 0) + n;
  }
  const parts = Object.entries(total).map(([kind, n]) => `${n} ${kind}`);
  return parts.length ? parts.join(" · ") : "no clients";
}

function isWaiting(session) {
  return (session.ptys || []).some((pty) => pty.waiting);
}

let refreshing = null;
function refresh() {
  refreshing ??= api("GET", "/api/sessions")
    .then((sessions) => {
      ui.sessions = sessions;
      noticeWaiting(sessions);
      renderSessions();
      renderTabs();
    })
    .catch(() => connState("down", "offline"))
    .finally(() => { refreshing = null; });
  return refreshing;
}

let refreshTimer = null;
function refreshSoon() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refresh, 150);
}

function renderSessions() {
  const list = $("session-list");
  list.replaceChildren();
  $("empty").hidden = ui.sessions.length > 0;
  for (const session of ui.sessions) {
    const item = document.createElement("li");
    item.dataset.name = session.name;
    item.className = session.name === ui.current ? "current" : "";
    const name = document.createElement("div");
    name.className = "s-name";
    name.textContent = session.name;
    if (isWaiting(session)) {
      const mark = document.createElement("span");
      mark.className = "waiting-mark";
      mark.textContent = "● waiting";
      name.append(mark);
    }
    const meta = document.createElement("div");
    meta.className = `s-meta state-${session.state}`;
    const shells = (session.ptys || []).length;
    meta.textContent = `${session.state} · ${shells} pty · ${clientsText(session.ptys || [])}`;
    const where = document.createElement("div");
    where.className = "s-meta";
    where.textContent = session.workspace;
    item.append(name, meta, where);
    item.addEventListener("click", () => select(session.name, 0));
    list.append(item);
  }
  const waiting = ui.sessions.filter(isWaiting).length;
  document.title = waiting ? `(${waiting}) coop` : "coop";
}

function renderTabs() {
  const tabs = $("tab-list");
  tabs.replaceChildren();
  const session = ui.sessions.find((s) => s.name === ui.current);
  document.body.classList.toggle("has-session", Boolean(session));
  $("title").textContent = session ? session.name : "";
  if (!session) return;
  const ptys = [...(session.ptys || [])].sort((a, b) => a.id - b.id); // the agent first
  for (const pty of ptys) {
    const tab = document.createElement("button");
    tab.className = `tab${pty.id === ui.pty ? " current" : ""}`;
    tab.setAttribute("role", "tab");
    tab.dataset.pty = String(pty.id);
    tab.textContent = pty.kind === "agent" ? `agent · ${pty.command}` : `shell ${pty.id}`;
    if (!pty.alive) tab.textContent += pty.kind === "agent" && session.state === "crashed"
      ? " (crashed: ↻ Restart)" : " (exited)";
    if (pty.waiting) tab.textContent += " ●";
    const blockedAt = ui.blocked.get(`${session.name}/${pty.id}`);
    if (blockedAt && Date.now() - blockedAt < BLOCKED_MARK_MS) {
      tab.textContent += " ⚠";
      tab.title = "Input from this page was blocked (see the banner)";
    }
    tab.addEventListener("click", () => select(session.name, pty.id));
    tabs.append(tab);
  }
}

function select(name, pty) {
  document.body.classList.remove("drawer-open");
  if (ui.current === name && ui.pty === pty && ui.link && !ui.link.closed) {
    term.focus();
    return;
  }
  ui.link?.close();
  ui.current = name;
  ui.pty = pty;
  term.reset();
  renderSessions();
  renderTabs();
  ui.link = new Link(name, pty);
  history.replaceState(null, "", `#${encodeURIComponent(name)}/${pty}`);
  term.focus();
}

// -- notifications when an agent starts waiting -----------------------------------------
function noticeWaiting(sessions) {
  for (const session of sessions) {
    const now = isWaiting(session);
    const before = ui.waiting.get(session.name);
    ui.waiting.set(session.name, now);
    if (now && before === false) notify(session);
  }
}

function notify(session) {
  if (!("Notification" in window) || Notification.permission !== "granted") return;
  const agent = (session.ptys || []).find((pty) => pty.kind === "agent");
  const note = new Notification(`${session.name} is waiting for you`, {
    body: agent?.notified || "The agent waits for input.", tag: `coop-${session.name}`,
    icon: "/icon.svg",
  });
  note.onclick = () => {
    window.focus();
    select(session.name, 0);
  };
}

// -- network approvals: the proxy refused a host; the user may let it through -----------
function askNetwork(event) {
  const key = `${event.session}|${event.host}`;
  if (document.querySelector(`.approval[data-key="${CSS.escape(key)}"]`)) return;
  const bar = document.createElement("div");
  bar.className = "approval";
  bar.dataset.key = key;
  bar.dataset.host = event.host;
  const what = document.createElement("span");
  what.className = "what";
  what.textContent = `⛔ ${event.session}: the agent was refused ${event.host}:${event.port}`;
  const why = document.createElement("div");
  why.className = "why";
  why.textContent = event.reason || "";
  what.append(why);
  bar.append(what);
  if (!READ_ONLY) {
    const allow = document.createElement("button");
    allow.textContent = "Allow for this session";
    allow.addEventListener("click", async () => {
      try {
        await api("POST", `/api/sessions/${encodeURIComponent(event.session)}/allow`,
                  { host: event.host });
        bar.remove();
        banner(`${event.host} is allowed in ${event.session} until it ends.`, 3000);
      } catch (error) {
        banner(String(error.message || error));
      }
    });
    bar.append(allow);
  }
  const dismiss = document.createElement("button");
  dismiss.textContent = "Dismiss";
  dismiss.addEventListener("click", () => bar.remove());
  bar.append(dismiss);
  $("approvals").append(bar);
  if ("Notification" in window && Notification.permission === "granted") {
    new Notification(`${event.session} was refused ${event.host}`, {
      body: "Open coop to allow it for this session.", tag: `coop-net-${key}`, icon: "/icon.svg",
    });
  }
}

function onEvent(event) {
  if (event.event === "network_denied") askNetwork(event);
  if (event.event === "network_approved" || event.event === "session_exited") {
    for (const bar of document.querySelectorAll(".approval")) {
      const [session, host] = bar.dataset.key.split("|");
      if (session === event.session && (!event.host || host === event.host)) bar.remove();
    }
  }
  refreshSoon();
}

function watchEvents(attempt = 0) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${scheme}//${location.host}/api/events`);
  ws.onopen = () => {
    attempt = 0;
    refresh();
  };
  ws.onmessage = (message) => onEvent(JSON.parse(message.data));
  ws.onclose = () => setTimeout(() => watchEvents(attempt + 1), Math.min(8000, 250 * 2 ** attempt));
}

// -- dialogs and buttons ----------------------------------------------------------------
function ask(text, okLabel) {
  const dialog = $("confirm");
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = okLabel;
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

$("kill").addEventListener("click", async () => {
  const name = ui.current;
  if (!name) return;
  if (!(await ask(`Kill session ${name}? The agent and every shell in it stop.`, "Kill"))) return;
  try {
    await api("DELETE", `/api/sessions/${encodeURIComponent(name)}`);
    ui.link?.close();
    ui.link = null;
    ui.current = null;
    await refresh();
  } catch (error) {
    banner(String(error.message || error));
  }
});

$("restart").addEventListener("click", async () => {
  const name = ui.current;
  const session = ui.sessions.find((s) => s.name === name);
  if (!session) return;
  const agent = (session.ptys || []).find((pty) => pty.kind === "agent");
  const running = session.state === "running" && agent?.alive;
  if (running && !(await ask(`Restart the agent of ${name}? It is stopped first.`, "Restart"))) {
    return;
  }
  try {
    await api("POST", `/api/sessions/${encodeURIComponent(name)}/restart`);
    banner(`Restarting the agent of ${name}…`, 3000);
    select(name, 0);
  } catch (error) {
    banner(String(error.message || error));
  }
});

$("new-shell").addEventListener("click", async () => {
  const name = ui.current;
  if (!name) return;
  try {
    const reply = await api("POST", `/api/sessions/${encodeURIComponent(name)}/shell`);
    await refresh();
    select(name, reply.pty);
  } catch (error) {
    banner(String(error.message || error));
  }
});

$("new-session").addEventListener("submit", async (event) => {
  event.preventDefault();
  const workspace = $("new-workspace").value.trim();
  if (!workspace) return;
  try {
    const reply = await api("POST", "/api/sessions", { workspace });
    $("new-workspace").value = "";
    await refresh();
    select(reply.session, 0);
  } catch (error) {
    banner(String(error.message || error));
  }
});

// The agent's earlier output as text: a redrawing terminal has no scrollback after a
// reconnect, and a phone scrolls a page of text far better than a terminal.
$("history-open").addEventListener("click", async () => {
  if (!ui.current) return;
  const query = new URLSearchParams({ pty: String(ui.pty), lines: "3000" });
  const response = await fetch(`/api/sessions/${encodeURIComponent(ui.current)}/logs?${query}`);
  const text = $("history-text");
  text.textContent = response.ok ? await response.text() : `(no history: ${response.status})`;
  $("history-title").textContent = `History · ${ui.current} · ${ui.pty === 0 ? "agent" : `shell ${ui.pty}`}`;
  $("history").showModal();
  text.scrollTop = text.scrollHeight;
});

$("fit").addEventListener("click", () => {
  setClaim(!ui.claim);
  ui.link?.sendSize();
});
$("drawer-toggle").addEventListener("click", () => document.body.classList.toggle("drawer-open"));
$("theme").addEventListener("click", () => {
  ui.theme = { auto: "dark", dark: "light", light: "auto" }[ui.theme];
  store("coop.theme", ui.theme);
  applyTheme();
});
function setFont(delta) {
  const size = Math.max(8, Math.min(28, term.options.fontSize + delta));
  term.options.fontSize = size;
  store("coop.font", String(size));
  ui.link?.sendSize();
}
$("font-down").addEventListener("click", () => setFont(-1));
$("font-up").addEventListener("click", () => setFont(1));
$("notify").addEventListener("click", async () => {
  if (!("Notification" in window)) {
    banner("This browser has no notifications (they need https or localhost).");
    return;
  }
  const permission = await Notification.requestPermission();
  $("notify").setAttribute("aria-pressed", String(permission === "granted"));
});

let resizeTimer = null;
new ResizeObserver(() => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => ui.link?.sendSize(), 80);
}).observe($("term-wrap"));
window.matchMedia("(prefers-color-scheme: light)").addEventListener("change", applyTheme);

// For tests and the curious: what the terminal shows, as text.
window.coop = {
  term, ui,
  screen() {
    const buffer = term.buffer.active;
    const lines = [];
    for (let y = 0; y < term.rows; y += 1) {
      // Trailing blanks trimmed: a written space and an empty cell look the same.
      lines.push((buffer.getLine(buffer.viewportY + y)?.translateToString(true) ?? "").trimEnd());
    }
    return lines.join("\n");
  },
  dropConnection() { ui.link?.ws.close(); },
};

document.body.classList.toggle("read-only", READ_ONLY);
if ("Notification" in window) $("notify").setAttribute("aria-pressed", String(Notification.permission === "granted"));
applyTheme();
connState("down", "connecting");
refresh().then(() => {
  const [name, pty] = decodeURIComponent(location.hash.slice(1)).split("/");
  const wanted = ui.sessions.find((s) => s.name === name) || ui.sessions[0];
  if (wanted) select(wanted.name, wanted.name === name ? Number(pty) || 0 : 0);
});
watchEvents();
