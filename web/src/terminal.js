// The one xterm.js terminal of the page, its addons and themes.
import { Terminal } from "@xterm/xterm";
import { FitAddon } from "@xterm/addon-fit";
import { WebLinksAddon } from "@xterm/addon-web-links";
import { ClipboardAddon } from "@xterm/addon-clipboard";
import { $, PHONE, READ_ONLY, stored, ui } from "./state.js";

const THEMES = {
  dark: { background: "#111418", foreground: "#e6e6e6", cursor: "#7fd18b", selectionBackground: "#3a4a5a" },
  light: { background: "#ffffff", foreground: "#1f2328", cursor: "#1a7f37", selectionBackground: "#b6d3f2",
           black: "#24292f", white: "#d0d7de", brightWhite: "#8c959f", yellow: "#9a6700", brightYellow: "#7d4e00" },
};

export const term = new Terminal({
  fontSize: Number(stored("coop.font", PHONE.matches ? 12 : 14)),
  fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace',
  cursorBlink: true, scrollback: 5000, allowProposedApi: true, macOptionIsMeta: true,
  disableStdin: READ_ONLY,
});
export const fit = new FitAddon();
term.loadAddon(fit);
term.loadAddon(new WebLinksAddon());
term.loadAddon(new ClipboardAddon()); // OSC 52: the agent's copies land in this device's clipboard
term.open($("terminal"));

function effectiveTheme() {
  if (ui.theme !== "auto") return ui.theme;
  return window.matchMedia("(prefers-color-scheme: light)").matches ? "light" : "dark";
}
export function applyTheme() {
  if (ui.theme === "auto") delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = ui.theme;
  term.options.theme = THEMES[effectiveTheme()];
  $("theme").title = `Theme: ${ui.theme}`;
}

// What the terminal shows, as text (for tests and the curious).
export function screenText() {
  const buffer = term.buffer.active;
  const lines = [];
  for (let y = 0; y < term.rows; y += 1) {
    // Trailing blanks trimmed: a written space and an empty cell look the same.
    lines.push((buffer.getLine(buffer.viewportY + y)?.translateToString(true) ?? "").trimEnd());
  }
  return lines.join("\n");
}
