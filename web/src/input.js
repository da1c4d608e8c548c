// Input from this device: the keyboard (through xterm.js), the phone's key bar with sticky
// Ctrl and Alt, and the compose box.
import { $, banner, ui } from "./state.js";
import { term } from "./terminal.js";

const PASTE_START = "\x1b[200~";
const PASTE_END = "\x1b[201~";

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

// Typing needs no resize of its own: the supervisor applies the size this page last sent
// when it types (tmux's `latest`), and the page then draws at it again (Link.size).
export function sendInput(data) {
  ui.link?.send(withModifiers(data));
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

export function setUpKeys() {
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
