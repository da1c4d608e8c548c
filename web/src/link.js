// One terminal's WebSocket: input out, output in with flow control, control messages,
// and reconnecting on its own.
import { $, PHONE, READ_ONLY, ask, banner, connState, ui } from "./state.js";
import { fit, term } from "./terminal.js";
import { refresh, renderTabs } from "./sessions.js";

const encoder = new TextEncoder();
const ACK_EVERY = 64 * 1024; // the server pauses past 512 KiB unacknowledged (docs/web.md)
export const BLOCKED_MARK_MS = 60000;

export class Link {
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
    this.serverSize = null; // the join's `size` tells it again
    this.pendingSize = null;
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
      case "size": this.size(message.rows, message.cols); break;
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
      if (this.closed || ui.expired) return; // retrying cannot help: a new link is needed
      if (!session || session.state === "stopped") {
        connState("down", session ? "stopped" : "session ended");
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
      const known = this.serverSize;
      if (!known || known.rows !== term.rows || known.cols !== term.cols) {
        this.pendingSize = { rows: term.rows, cols: term.cols }; // until the server says so
      }
    }
  }

  // The PTY's size, on join and on every change (tmux's `latest`: whoever typed or resized
  // last). A page that is not the latest draws at that size, so it shows what the others
  // see; typing or resizing makes it the latest again. A phone does not take the size for
  // itself unless it "fit"s (SPEC §10: it must not shrink the agent for everyone), and a
  // viewer-only page never does.
  size(rows, cols) {
    this.serverSize = { rows, cols };
    if (rows <= 0 || cols <= 0) return;
    const claiming = !READ_ONLY && (!PHONE.matches || ui.claim);
    if (claiming) {
      const pending = this.pendingSize;
      if (pending) { // sizes from before our own resize arrived are stale
        if (pending.rows === rows && pending.cols === cols) this.pendingSize = null;
        return;
      }
      if (rows === term.rows && cols === term.cols) return;
      if (PHONE.matches) setClaim(false);
    }
    term.resize(cols, rows);
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    clearTimeout(this.ackTimer);
    this.ws.close();
  }
}

export function setClaim(claim) {
  ui.claim = claim;
  $("fit").setAttribute("aria-pressed", String(claim));
  // Following again: the supervisor forgets this page's size, so typing here no longer
  // applies it (it would shrink the agent for everyone).
  if (!claim && ui.link?.ws.readyState === WebSocket.OPEN) {
    ui.link.ws.send(JSON.stringify({ type: "follow" }));
  }
}

function watchers(session, id) {
  const pty = ui.sessions.find((s) => s.name === session)?.ptys?.find((p) => p.id === id);
  return pty ? Object.values(pty.clients || {}).reduce((a, b) => a + b, 0) : 0;
}

// The banner fades; the tab keeps a ⚠ for a minute (BLOCKED_MARK_MS) to be seen later.
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

