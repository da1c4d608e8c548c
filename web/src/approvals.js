// Network approvals: the proxy refused a host the agent asked for; the user may let it
// through for the session (SPEC §12a).
import { $, READ_ONLY, api, banner, onAction, sessionPath } from "./state.js";

export function askNetwork(event) {
  const key = `${event.session}|${event.host}`;
  if (document.querySelector(`.approval[data-key="${CSS.escape(key)}"]`)) return;
  const bar = document.createElement("div");
  bar.className = "approval";
  bar.dataset.key = key;
  bar.dataset.host = event.host;
  const what = document.createElement("span");
  what.className = "what";
  what.textContent = `${event.session}: the agent was refused ${event.host}:${event.port}`;
  const why = document.createElement("div");
  why.className = "why";
  why.textContent = event.reason || "";
  what.append(why);
  bar.append(what);
  if (!READ_ONLY) {
    const allow = document.createElement("button");
    allow.textContent = "Allow for this session";
    onAction(allow, async () => {
      await api("POST", sessionPath(event.session, "/allow"), { host: event.host });
      bar.remove();
      banner(`${event.host} is allowed in ${event.session} until it ends.`, 3000);
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

export function approvalsAnswered(event) {
  for (const bar of document.querySelectorAll(".approval")) {
    const [session, host] = bar.dataset.key.split("|");
    if (session === event.session && (!event.host || host === event.host)) bar.remove();
  }
}
