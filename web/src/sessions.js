// The sessions: the list, the tabs, choosing one, notifications when an agent starts
// waiting, and the actions on a session (kill, restart, new shell, new session, history).
import { $, api, ask, banner, connState, onAction, sessionPath, ui } from "./state.js";
import { term } from "./terminal.js";
import { BLOCKED_MARK_MS, Link } from "./link.js";

function clientsText(ptys) {
  const total = {};
  for (const pty of ptys) {
    for (const [kind, n] of Object.entries(pty.clients || {})) total[kind] = (total[kind] || 0) + n;
  }
  const parts = Object.entries(total).map(([kind, n]) => `${n} ${kind}`);
  return parts.length ? parts.join(" · ") : "no clients";
}

// "12s ago", "5m ago": when the session last printed anything (like the TUI's ACTIVE).
function lastActive(session) {
  const last = Math.max(0, ...(session.ptys || []).map((pty) => pty.last_output || 0));
  if (!last) return "";
  const seconds = Math.max(0, Date.now() / 1000 - last);
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60]]) {
    if (seconds >= size) return `${Math.floor(seconds / size)}${unit} ago`;
  }
  return `${Math.floor(seconds)}s ago`;
}

function isWaiting(session) {
  return (session.ptys || []).some((pty) => pty.waiting);
}

let refreshing = null;
export function refresh() {
  refreshing ??= api("GET", "/api/sessions")
    .then((sessions) => {
      ui.sessions = sessions;
      noticeWaiting(sessions);
      renderSessions();
      renderTabs();
    })
    .catch((error) => {
      if (error.status === 403) {
        // `coop serve` was started again with a new token: this page's cookie is stale.
        ui.expired = true;
        connState("down", "link expired");
        banner("This link no longer works: coop serve was restarted with a new token. "
               + "Open the new link (or scan the new QR code).", 600000);
      } else {
        connState("down", "offline");
      }
    })
    .finally(() => { refreshing = null; });
  return refreshing;
}

let refreshTimer = null;
export function refreshSoon() {
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
    const active = lastActive(session);
    if (active) {
      const when = document.createElement("span");
      when.className = "s-active";
      when.textContent = active;
      when.title = "last output";
      name.append(when);
    }
    const meta = document.createElement("div");
    meta.className = `s-meta state-${session.state}`;
    const shells = (session.ptys || []).length;
    meta.textContent = `${session.state} · ${shells} pty · ${clientsText(session.ptys || [])}`;
    const where = document.createElement("div");
    where.className = "s-meta s-where";
    where.title = session.workspace;
    where.textContent = session.workspace;
    item.append(name, meta, where);
    item.addEventListener("click", () => select(session.name, 0));
    list.append(item);
  }
  const waiting = ui.sessions.filter(isWaiting).length;
  document.title = waiting ? `(${waiting}) coop` : "coop";
}

export function renderTabs() {
  const tabs = $("tab-list");
  tabs.replaceChildren();
  const session = ui.sessions.find((s) => s.name === ui.current);
  document.body.classList.toggle("has-session", Boolean(session));
  document.body.classList.toggle("is-stopped", session?.state === "stopped");
  $("title").textContent = session ? session.name : "";
  if (!session) return;
  if (session.state === "stopped") {
    $("stopped-text").textContent = `${session.name} is stopped: its processes ended (a `
      + "reboot?) but its files remain. Starting it again keeps them; Kill discards them.";
    return;
  }
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

export function select(name, pty) {
  document.body.classList.remove("drawer-open");
  if (ui.current === name && ui.pty === pty && ui.link && !ui.link.closed) {
    term.focus();
    return;
  }
  ui.link?.close();
  ui.link = null;
  ui.current = name;
  ui.pty = pty;
  term.reset();
  renderSessions();
  renderTabs();
  if (ui.sessions.find((s) => s.name === name)?.state === "stopped") return; // nothing to attach
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

export function setUpActions() {
  setInterval(renderSessions, 5000); // keep "active … ago" true between events

  onAction("kill", async () => {
    const name = ui.current;
    if (!name) return;
    if (!(await ask(`Kill session ${name}? The agent and every shell in it stop.`, "Kill"))) return;
    await api("DELETE", sessionPath(name));
    ui.link?.close();
    ui.link = null;
    ui.current = null;
    await refresh();
  });

  onAction("start-again", async () => {
    const name = ui.current;
    if (!name) return;
    await api("POST", sessionPath(name, "/start"));
    await refresh();
    ui.current = null; // select() attaches afresh now that it runs
    select(name, 0);
  });

  onAction("restart", async () => {
    const name = ui.current;
    const session = ui.sessions.find((s) => s.name === name);
    if (!session) return;
    const agent = (session.ptys || []).find((pty) => pty.kind === "agent");
    const running = session.state === "running" && agent?.alive;
    if (running && !(await ask(`Restart the agent of ${name}? It is stopped first.`, "Restart"))) {
      return;
    }
    await api("POST", sessionPath(name, "/restart"));
    banner(`Restarting the agent of ${name}…`, 3000);
    select(name, 0);
  });

  onAction("new-shell", async () => {
    const name = ui.current;
    if (!name) return;
    const reply = await api("POST", sessionPath(name, "/shell"));
    await refresh();
    select(name, reply.pty);
  });

  onAction("new-session", async (event) => {
    event.preventDefault();
    const workspace = $("new-workspace").value.trim();
    if (!workspace) return;
    const reply = await api("POST", "/api/sessions", { workspace });
    $("new-workspace").value = "";
    await refresh();
    select(reply.session, 0);
  }, "submit");

  // The agent's earlier output as text: a redrawing terminal has no scrollback after a
  // reconnect, and a phone scrolls a page of text far better than a terminal.
  $("history-open").addEventListener("click", async () => {
    if (!ui.current) return;
    const query = new URLSearchParams({ pty: String(ui.pty), lines: "3000" });
    const response = await fetch(`${sessionPath(ui.current, "/logs")}?${query}`);
    const text = $("history-text");
    text.textContent = response.ok ? await response.text() : `(no history: ${response.status})`;
    $("history-title").textContent = `History · ${ui.current} · ${ui.pty === 0 ? "agent" : `shell ${ui.pty}`}`;
    $("history").showModal();
    text.scrollTop = text.scrollHeight;
  });
}
