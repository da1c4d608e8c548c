// coop's page: the session list, xterm.js terminals over /ws, and the phone's key bar and
// compose box. It speaks only the HTTP API of `coop serve` (docs/web.md). This module wires
// the parts together and starts the page.
import { $, READ_ONLY, banner, connState, store, ui } from "./state.js";
import { applyTheme, screenText, term } from "./terminal.js";
import { setClaim } from "./link.js";
import { sendInput, setUpKeys } from "./input.js";
import { refresh, refreshSoon, select, setUpActions } from "./sessions.js";
import { approvalsAnswered, askNetwork } from "./approvals.js";

term.onData((data) => sendInput(data));
term.onBinary((data) => ui.link?.send(Uint8Array.from(data, (c) => c.charCodeAt(0))));
$("term-wrap").addEventListener("click", () => term.focus()); // tap to focus
setUpKeys();
setUpActions();

function onEvent(event) {
  if (event.event === "network_denied") askNetwork(event);
  if (event.event === "network_approved" || event.event === "session_exited") {
    approvalsAnswered(event);
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

$("fit").addEventListener("click", () => {
  setClaim(!ui.claim);
  const link = ui.link;
  if (!link) return;
  if (ui.claim) link.sendSize();
  else if (link.serverSize) link.size(link.serverSize.rows, link.serverSize.cols); // follow
});
$("drawer-toggle").addEventListener("click", (event) => {
  event.stopPropagation();
  document.body.classList.toggle("drawer-open");
});
// A tap beside the open drawer closes it, as on any phone.
$("layout").addEventListener("click", (event) => {
  if (!$("sessions").contains(event.target)) document.body.classList.remove("drawer-open");
});
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
window.coop = { term, ui, screen: screenText, dropConnection() { ui.link?.ws.close(); } };

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
