"""The dashboard: every session at a glance, a live preview, and terminals.

It is a client of the daemon like any other: an `events` subscription keeps the table
current, `snapshot` requests feed the preview, and a terminal view is an `attach` stream.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable
from typing import Any

from rich.text import Text
from textual import events, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import (
    Button,
    DataTable,
    Footer,
    Header,
    Input,
    Label,
    Log,
    Static,
    TabbedContent,
    TabPane,
)

from coop.errors import CoopError
from coop.ipc.aclient import AsyncConnection
from coop.ipc.framing import CONTROL
from coop.paths import CoopPaths, coop_paths
from coop.tui.terminal import Terminal

EMPTY = ("No sessions yet.\n\nStart one from a project directory with `coop -d` (or `coop` "
         "to attach at once); it appears here.")


def _ago(now: float, then: float) -> str:
    return f"{_age(now - then)} ago" if then else "-"


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def _shown_path(path: str) -> str:
    """A path as the user would type it: under their home, from `~`."""
    home = os.path.expanduser("~").rstrip("/")
    if home and (path == home or path.startswith(home + "/")):
        return "~" + path[len(home):]
    return path


def _styled(rows: list[list[dict[str, Any]]]) -> Text:
    """Snapshot cells as Rich text, colours and attributes kept (the preview)."""
    from coop.tui.terminal import cell_style

    text = Text()
    for index, row in enumerate(rows):
        if index:
            text.append("\n")
        for cell in row:
            if cell["ch"] == "":
                continue
            text.append(cell["ch"] or " ", cell_style(cell["fg"], cell["bg"], cell["bold"],
                                                      cell["italic"], cell["underline"],
                                                      cell["reverse"], False))
        text.rstrip()
    return text


class ConfirmKill(ModalScreen[bool]):
    """Killing a session discards its upper dir: ask first. The question wraps at word
    boundaries within the dialog (a Label is as wide as its text unless told otherwise)."""

    BINDINGS = [Binding("y", "yes", "Kill"), Binding("n,escape", "no", "Cancel")]
    DEFAULT_CSS = """
    ConfirmKill { align: center middle; }
    ConfirmKill > Vertical { width: 60; max-width: 100%; height: auto; max-height: 100%;
                             border: thick $error; padding: 1 2; background: $surface; }
    ConfirmKill #question { width: 100%; }
    ConfirmKill Horizontal { height: auto; margin-top: 1; }
    """

    def __init__(self, name: str) -> None:
        super().__init__()
        self.session = name

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"Kill session {self.session}? Its sandbox stops and its upper dir "
                        "is discarded (the workspace and volumes stay).", id="question")
            with Horizontal():
                yield Button("Kill (y)", variant="error", id="yes")
                yield Button("Cancel (n)", id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_yes(self) -> None:
        self.dismiss(True)

    def action_no(self) -> None:
        self.dismiss(False)


class NewSession(ModalScreen[str | None]):
    """Pick the workspace of a new session (a directory path)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    NewSession { align: center middle; }
    NewSession > Vertical { width: 80; max-width: 100%; height: auto; max-height: 100%;
                            border: thick $primary; padding: 1 2; background: $surface; }
    NewSession Label { width: 100%; }
    """

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Start a session in which directory? (its Coopfile applies)")
            yield Input(value=os.getcwd(), id="workspace")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(os.path.expanduser(event.value.strip()) or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class WebLink(ModalScreen[bool]):
    """`coop serve` from the dashboard: the URLs and the QR code a phone scans.

    The code sits beside the text so that it fits an 80×24 terminal. A code that cannot fit
    the terminal (a long https URL with its fingerprint) is not drawn at all, since a phone
    could misread a cut one; the dialog says how big the terminal must be instead."""

    BINDINGS = [Binding("escape,q", "close", "Close"), Binding("x", "stop", "Stop serving")]
    SIDE = (24, 44)
    """The text column's narrowest and widest."""
    DEFAULT_CSS = """
    WebLink { align: center middle; }
    WebLink > Horizontal { width: auto; height: auto; max-width: 100%; max-height: 100%;
                           border: thick $primary; padding: 0 1; background: $surface; }
    WebLink #qr { width: auto; height: auto; }
    WebLink #qr.too-big { width: 24; padding: 1 1 0 0; }
    WebLink #side { width: 44; height: auto; padding: 1 0 0 1; }
    WebLink #side Label { width: 100%; margin-bottom: 1; }
    WebLink #side Button { width: 100%; }
    """

    def __init__(self, reply: dict[str, Any]) -> None:
        super().__init__()
        self.reply = reply
        from coop.commands.serve import PHONE_HINT, phone_url, qr_text

        phone = phone_url(reply)
        # No code of an address only this machine can reach: a phone cannot use it.
        self.target = phone or str(reply["url"])
        self.hint = ("Scan to open your sessions on a phone on this network. Anyone with the "
                     "link can type into them.") if phone else PHONE_HINT.replace("`", "")
        self.code = qr_text(phone).rstrip("\n") if phone else ""
        rows = self.code.split("\n")
        self.code_size = (max(len(row) for row in rows), len(rows))

    def compose(self) -> ComposeResult:
        with Horizontal():
            if self.code:
                yield Static(self.code, id="qr")
            with Vertical(id="side"):
                yield Label(self.hint, id="hint")
                yield Label(self.target, id="url")
                yield Button("Close (esc)", id="close")
                yield Button("Stop serving (x)", variant="error", id="stop")

    def on_mount(self) -> None:
        self._fit()

    def on_resize(self, event: events.Resize) -> None:
        self._fit()

    def _fit(self) -> None:
        """The code if the terminal has room for it and the text beside it; else why not."""
        width, height = self.app.size
        code_width, code_height = self.code_size
        frame = 2 + 2 + 1  # the border, the padding, the gap before the text
        room = width - frame - code_width
        fits = code_height + 2 <= height and room >= self.SIDE[0]
        if not self.code:
            self.query_one("#side").styles.width = max(self.SIDE[0], min(self.SIDE[1],
                                                                         width - 4))
            return
        qr = self.query_one("#qr", Static)
        qr.set_class(not fits, "too-big")
        if fits:
            qr.update(self.code)
        else:
            need = (code_width + frame + self.SIDE[0], code_height + 2)
            qr.update(f"Make the terminal at least {need[0]}×{need[1]} to show the QR "
                      "code here, or run `coop serve --qr` in a bigger one.")
            room = width - frame - 24
        self.query_one("#side").styles.width = max(self.SIDE[0], min(self.SIDE[1], room))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "stop")

    def action_close(self) -> None:
        self.dismiss(False)

    def action_stop(self) -> None:
        self.dismiss(True)


def _create_request(workspace: str, name: str | None = None,
                    argv: list[str] | None = None) -> dict[str, Any]:
    from pathlib import Path

    from coop.commands.session import workspace_create_request

    return workspace_create_request(coop_paths(), Path(workspace), name, argv)


class ScrollbackScreen(Screen[None]):
    """A PTY's scrollback from the daemon's output ring, as text."""

    BINDINGS = [Binding("escape,q", "app.pop_screen", "Back to the terminal")]

    def __init__(self, title: str, text: str) -> None:
        super().__init__()
        self.heading = title
        self.text = text

    def compose(self) -> ComposeResult:
        yield Header()
        log = Log(id="scrollback", auto_scroll=True)
        yield log
        yield Footer()

    def on_mount(self) -> None:
        self.title = self.heading
        self.query_one(Log).write(self.text)


class TerminalScreen(Screen[None]):
    """The PTYs of one session in tabs, the agent first. Ctrl+PageUp/PageDown switch tabs,
    Shift+PageUp shows the scrollback and Ctrl+] goes back; none of them reach the PTY."""

    BINDINGS = [
        Binding("ctrl+right_square_bracket", "leave", "Back to the dashboard", priority=True),
        Binding("ctrl+pageup", "switch(-1)", "Previous PTY", priority=True),
        Binding("ctrl+pagedown", "switch(1)", "Next PTY", priority=True),
        Binding("shift+pageup", "scrollback", "Scrollback", priority=True),
    ]

    def __init__(self, app_paths: CoopPaths, session: str,
                 terminals: list[tuple[int, str, AsyncConnection]], active: int,
                 size: tuple[int, int]) -> None:
        super().__init__()
        self.paths = app_paths
        self.session = session
        self.terminals = terminals
        self.active = active
        self.rows, self.cols = size

    def compose(self) -> ComposeResult:
        yield Header()
        with TabbedContent(initial=f"pty-{self.active}"):
            for ident, kind, conn in self.terminals:
                title = "agent" if kind == "agent" else f"shell {ident}"
                with TabPane(title, id=f"pty-{ident}"):
                    # The size the PTY got at attach: the first repaint parses at the right size.
                    yield Terminal(conn, rows=self.rows, cols=self.cols, id=f"term-{ident}")
        yield Footer()

    def on_mount(self) -> None:
        self.title = self.session
        self._focus_active()

    def _focus_active(self) -> None:
        active = self.query_one(TabbedContent).active
        self.query_one(f"#term-{active.removeprefix('pty-')}", Terminal).focus()

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        self._focus_active()

    def action_switch(self, step: int) -> None:
        tabs = self.query_one(TabbedContent)
        ids = [f"pty-{ident}" for ident, _, _ in self.terminals]
        tabs.active = ids[(ids.index(tabs.active) + step) % len(ids)]

    async def action_scrollback(self) -> None:
        from coop.pty.plain import plain_text

        pty = int(self.query_one(TabbedContent).active.removeprefix("pty-"))
        conn = await AsyncConnection.open(self.paths)
        try:
            await conn.request({"cmd": "logs", "session": self.session, "pty": pty})
            data = b"".join([body async for kind, body in conn.stream() if kind != CONTROL])
        finally:
            conn.close()
        text = plain_text(data).decode("utf-8", "replace")
        await self.app.push_screen(ScrollbackScreen(f"{self.session} · PTY {pty} scrollback",
                                                    text))

    def on_terminal_left(self, message: Terminal.Left) -> None:
        self._close()

    def on_terminal_ended(self, message: Terminal.Ended) -> None:
        if self.is_current:
            self.app.notify(f"{self.session}: {message.reason}")
        self._close()

    def action_leave(self) -> None:
        for terminal in self.query(Terminal):
            terminal.conn.send_control({"type": "detach"})
        self._close()

    def _close(self) -> None:
        """Leave once, however many ways the end was signalled (detach, then the stream's
        own `detached`)."""
        if self.is_current:
            self.app.pop_screen()


class CoopApp(App[None]):
    TITLE = "coop"
    CSS = """
    #sessions { height: 1fr; }
    #filter { display: none; }
    #filter.shown { display: block; }
    #preview { height: 2fr; border: round $primary; padding: 0 1; }
    #empty { padding: 2 4; }
    """
    BINDINGS = [
        Binding("enter", "attach", "Attach"),
        Binding("n", "new_session", "New"),
        Binding("slash", "filter", "Filter"),
        Binding("o", "sort", "Sort"),
        Binding("s", "shell", "Shell"),
        Binding("r", "restart", "Restart"),
        Binding("k", "kill", "Kill"),
        Binding("w", "web", "Web/QR"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, paths: CoopPaths | None = None, clock: Any = None) -> None:
        super().__init__()
        self.paths = paths or coop_paths()
        self.sessions: dict[str, dict[str, Any]] = {}
        self.shown: list[str] = []
        """Session names in table order (after filtering and sorting)."""
        self.filter_text = ""
        self.sort_key = "name"
        self.clock = clock or time.time
        # Kept rather than queried: queries search the current screen, which is a modal or
        # a terminal view whenever one is open, and events keep arriving meanwhile.
        self.table: DataTable[str] = DataTable(id="sessions", cursor_type="row")
        self.filter_field = Input(placeholder="filter sessions by name or workspace (Enter "
                                              "keeps it)", id="filter")
        self.empty = Static(EMPTY, id="empty")
        self.preview = Static("", id="preview")

    def compose(self) -> ComposeResult:
        yield Header()
        yield self.filter_field
        yield self.table
        yield self.empty
        yield self.preview
        yield Footer()

    async def on_mount(self) -> None:
        table = self.table
        table.add_columns("", "SESSION", "WORKSPACE", "STATE", "PTYS", "CLIENTS", "AGE",
                          "ACTIVE")
        table.focus()
        await self.refresh_sessions()
        self.watch_events()
        self.set_interval(1.0, self.refresh_preview)

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        conn = await AsyncConnection.open(self.paths)
        try:
            return await conn.request(message)
        finally:
            conn.close()

    @work(exclusive=True, group="events")
    async def watch_events(self) -> None:
        conn = await AsyncConnection.open(self.paths)
        async for _event in conn.events():
            await self.refresh_sessions()

    async def refresh_sessions(self) -> None:
        reply = await self.request({"cmd": "ls"})
        self.sessions = {s["name"]: s for s in reply["sessions"]}
        from coop.commands.serve import summary_line

        self.sub_title = summary_line(reply.get("web")) or ""  # browsers count as clients too
        table = self.table
        selected = self.selected()
        table.clear()
        now = self.clock()
        self.shown = self._ordered()
        for name in self.shown:
            info = self.sessions[name]
            ptys = info.get("ptys", [])
            waiting = any(p.get("waiting") for p in ptys if p.get("kind") == "agent")
            clients: dict[str, int] = {}
            for pty in ptys:
                for kind, count in pty.get("clients", {}).items():
                    clients[kind] = clients.get(kind, 0) + count
            table.add_row("●" if waiting else " ", name, _shown_path(info.get("workspace", "")),
                          info.get("state", ""), str(sum(1 for p in ptys if p.get("alive"))),
                          ", ".join(f"{n} {k}" for k, n in sorted(clients.items())) or "-",
                          _age(now - info.get("created", now)),
                          _ago(now, max((p.get("last_output", 0) for p in ptys), default=0)),
                          key=name)
        self.empty.display = not self.sessions
        self.preview.display = bool(self.sessions)
        if selected in self.shown:
            table.move_cursor(row=self.shown.index(selected))
        await self.refresh_preview()

    def _ordered(self) -> list[str]:
        needle = self.filter_text.lower()
        names = [n for n, info in self.sessions.items()
                 if needle in n.lower() or needle in str(info.get("workspace", "")).lower()]

        def activity(name: str) -> float:
            return -max((p.get("last_output", 0) for p in self.sessions[name].get("ptys", [])),
                        default=0)

        def waiting_first(name: str) -> tuple[bool, str]:
            ptys = self.sessions[name].get("ptys", [])
            return (not any(p.get("waiting") for p in ptys), name)

        keys: dict[str, Any] = {"name": lambda n: n, "activity": activity,
                                "waiting": waiting_first}
        return sorted(names, key=keys[self.sort_key])

    def selected(self) -> str | None:
        table = self.table
        if not self.shown or table.row_count == 0:
            return None
        return self.shown[min(table.cursor_row, table.row_count - 1)]

    def action_filter(self) -> None:
        field = self.filter_field
        field.add_class("shown")
        field.focus()

    async def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self.filter_text = event.value
            await self.refresh_sessions()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            self.table.focus()

    async def action_sort(self) -> None:
        order = ["name", "activity", "waiting"]
        self.sort_key = order[(order.index(self.sort_key) + 1) % len(order)]
        self.notify(f"sorted by {self.sort_key}")
        await self.refresh_sessions()

    async def refresh_preview(self) -> None:
        name = self.selected()
        preview = self.preview
        if name is None:
            return
        try:
            reply = await self.request({"cmd": "snapshot", "session": name, "pty": 0,
                                        "format": "text"})
        except Exception:
            return
        lines = reply.get("lines", [])
        while lines and not lines[-1]:
            lines.pop()
        preview.update("\n".join(lines) or "(empty screen)")
        preview.border_title = f"{name} · agent"

    async def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        await self.refresh_preview()

    async def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a row (the table takes the key before the app's binding)."""
        await self.action_attach()

    async def open_terminal(self, cmd: str, extra: dict[str, Any]) -> None:
        """Attach to every live PTY of the selected session (a new shell too, for `shell`),
        each in a tab; the requested one is shown."""
        name = self.selected()
        if name is None:
            return
        rows, cols = max(1, self.size.height - 4), self.size.width  # header, tabs, footer
        size = {"kind": "tui", "size": [rows, cols], "session": name}
        terminals: list[tuple[int, str, AsyncConnection]] = []
        first = await AsyncConnection.open(self.paths)
        reply = await first.request({"cmd": cmd, **size, **extra})
        active = int(reply.get("pty", 0))
        terminals.append((active, str(reply.get("kind", "agent")), first))
        for pty in self.sessions.get(name, {}).get("ptys", []):
            if pty.get("alive") and pty["id"] != active:
                conn = await AsyncConnection.open(self.paths)
                await conn.request({"cmd": "attach", "pty": pty["id"], **size})
                terminals.append((int(pty["id"]), str(pty["kind"]), conn))
        terminals.sort(key=lambda t: t[0])
        await self.push_screen(TerminalScreen(self.paths, name, terminals, active,
                                              (rows, cols)))

    async def action_attach(self) -> None:
        name = self.selected()
        stopped = self.sessions.get(name or "", {})
        if stopped.get("state") == "stopped":  # a reboot took its processes: start it again
            request = await asyncio.get_running_loop().run_in_executor(
                None, _create_request, str(stopped["workspace"]), name, stopped.get("argv"))
            reply = await self.request({**request, "revive": True})
            if not reply.get("ok"):
                self.notify(str(reply.get("message")), severity="error", timeout=10)
                return
            self.notify(f"{name} runs again, with the files it had")
            await self.refresh_sessions()
        await self.open_terminal("attach", {"pty": 0})

    async def action_shell(self) -> None:
        await self.open_terminal("shell", {"new": True})

    async def action_restart(self) -> None:
        name = self.selected()
        if name:
            await self.request({"cmd": "restart", "session": name})
            self.notify(f"restarting the agent of {name}")

    def action_kill(self) -> None:
        name = self.selected()
        if name is None:
            return

        async def decided(kill: bool | None) -> None:
            if kill:
                await self.request({"cmd": "kill", "sessions": [name]})
                self.notify(f"killed {name}")
                await self.refresh_sessions()

        self.push_screen(ConfirmKill(name), decided)


    async def action_web(self) -> None:
        """Serve on the LAN (or show the server already running) with its QR code."""
        reply = await self.request({"cmd": "serve", "host": "0.0.0.0", "port": 8888})
        if not reply.get("ok"):
            self.notify(str(reply.get("message")), severity="error", timeout=10)
            return

        async def closed(stop: bool | None) -> None:
            if stop:
                await self.request({"cmd": "serve", "stop": True})
                self.notify("the web server stopped")

        self.push_screen(WebLink(reply), closed)

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for title, help_text, action in (
                ("New session", "Start a session in a workspace", self.action_new_session),
                ("Attach", "Open the selected session's agent", self.action_attach),
                ("New shell", "A shell in the selected session's sandbox", self.action_shell),
                ("Restart agent", "Restart the selected session's agent", self.action_restart),
                ("Kill session", "Stop the selected session (asks first)", self.action_kill),
                ("Serve on the LAN", "Start `coop serve --host 0.0.0.0` and show its QR code",
                 self.action_web)):
            yield SystemCommand(title, help_text, action)

    def action_new_session(self) -> None:
        async def chosen(workspace: str | None) -> None:
            if not workspace:
                return
            try:
                request = await asyncio.get_running_loop().run_in_executor(
                    None, _create_request, workspace)
                reply = await self.request(request)
            except CoopError as exc:
                self.notify(exc.render(), severity="error", timeout=10)
                return
            self.notify(f"started {reply['session']}")
            await self.refresh_sessions()

        self.push_screen(NewSession(), chosen)


def run_tui() -> int:
    CoopApp().run()
    return 0

