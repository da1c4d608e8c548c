"""The TUI against a real daemon with scripted sessions, driven by Textual's pilot.

The pilot runs in a subprocess as the unprivileged test user (the daemon only talks to its
own uid); each script prints what the user would see as JSON for the test to check.
"""

from __future__ import annotations

import json
import textwrap
import time

from tests.helpers import COOP, User

PRELUDE = """
import asyncio, json, subprocess, sys
from coop.tui.app import CoopApp, ConfirmKill
from coop.tui.terminal import Terminal
from textual.widgets import DataTable, Static

def rows(app):
    table = app.table
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]

async def wait_for(pilot, check, timeout=60):
    # Generous: a loaded machine is slow, not wrong. What is awaited is a condition.
    for _ in range(int(timeout / 0.1)):
        if check():
            return True
        await pilot.pause(0.1)
    return False

async def until(pilot, check, timeout=60):
    # wait_for with a coroutine as the check (a request to the daemon)
    for _ in range(int(timeout / 0.1)):
        if await check():
            return True
        await pilot.pause(0.1)
    return False
"""


def pilot(user: User, body: str) -> dict[str, object]:
    code = PRELUDE + "\nasync def main():\n    app = CoopApp()\n" \
        "    async with app.run_test(size=(120, 40)) as pilot:\n" \
        + textwrap.indent(textwrap.dedent(body), " " * 8) + "\nasyncio.run(main())\n"
    result = user.run([COOP[0], "-c", code], timeout=300)
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    data: dict[str, object] = json.loads(result.stdout.decode().strip().splitlines()[-1])
    return data


def start(user: User, name: str, script: str) -> None:
    result = user.coop("-d", "-n", name, "--", "sh", "-c", script)
    assert result.returncode == 0, result.stderr


def test_dashboard_lists_sessions_and_previews_the_selected_one(session_user: User) -> None:
    start(session_user, "alpha", "printf '\\033[1;31mhello alpha\\033[0m\\n'; exec sleep 1000")
    start(session_user, "beta", "echo hello beta; exec sleep 1000")
    seen = pilot(session_user, """
        await wait_for(pilot, lambda: len(rows(app)) == 2)
        await wait_for(pilot, lambda: "hello alpha" in str(app.preview.render()))
        first = str(app.preview.render())
        await pilot.press("down")
        await wait_for(pilot, lambda: "hello beta" in str(app.preview.render()))
        print(json.dumps({"rows": rows(app), "first": first,
                          "second": str(app.preview.render())}))
    """)
    names = [row[1] for row in seen["rows"]]  # type: ignore[attr-defined]
    assert names == ["alpha", "beta"]
    assert all(row[3] == "running" for row in seen["rows"])  # type: ignore[attr-defined]
    assert "hello alpha" in str(seen["first"]) and "hello beta" in str(seen["second"])


def test_empty_state_says_how_to_start(session_user: User) -> None:
    seen = pilot(session_user, """
        await wait_for(pilot, lambda: not app.preview.display)  # the first listing came
        print(json.dumps({"empty": app.query_one("#empty").display,
                          "text": str(app.query_one("#empty").render())}))
    """)
    assert seen["empty"] is True
    assert "coop -d" in str(seen["text"])


def test_typing_in_the_terminal_reaches_the_pty_and_echo_renders(session_user: User) -> None:
    start(session_user, "shell", "exec sh")
    seen = pilot(session_user, """
        await wait_for(pilot, lambda: len(rows(app)) == 1)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen.focused, Terminal))
        term = app.screen.query_one(Terminal)
        for key in "echo tui-$((6*7))":
            await pilot.press(key if key != " " else "space")
        await pilot.press("enter")
        ok = await wait_for(pilot, lambda: any("tui-42" == l for l in term.text()))
        for key in "stty size":
            await pilot.press(key if key != " " else "space")
        await pilot.press("enter")
        size = f"{term.size.height} {term.size.width}"
        resized = await wait_for(pilot, lambda: any(l.strip() == size for l in term.text()))
        await pilot.press("ctrl+right_square_bracket")
        back = await wait_for(pilot, lambda: app.screen is app.screen_stack[0])
        print(json.dumps({"echo": ok, "resized": resized, "size": size,
                          "text": term.text(), "back": back}))
    """)
    assert seen["echo"], seen["text"]
    assert seen["resized"], (seen["size"], seen["text"])
    assert seen["back"]


def test_the_clients_column_drops_the_tui_the_moment_it_leaves(session_user: User) -> None:
    # A session that prints nothing: no activity event would refresh the list by chance.
    start(session_user, "quiet", "exec sleep 1000")
    seen = pilot(session_user, """
        await wait_for(pilot, lambda: len(rows(app)) == 1)
        before = rows(app)[0][5]
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen.focused, Terminal))
        attached = await wait_for(pilot, lambda: rows(app)[0][5] == "1 tui")
        await pilot.press("ctrl+right_square_bracket")
        await wait_for(pilot, lambda: app.screen is app.screen_stack[0])
        left = await wait_for(pilot, lambda: rows(app)[0][5] == "-")
        print(json.dumps({"before": before, "attached": attached, "left": left,
                          "rows": rows(app)}))
    """)
    assert seen["before"] == "-" and seen["attached"], seen
    assert seen["left"], seen["rows"]  # not "1 tui" until something else happens


def test_kill_asks_then_kills(session_user: User) -> None:
    start(session_user, "doomed", "exec sleep 1000")
    seen = pilot(session_user, """
        await wait_for(pilot, lambda: len(rows(app)) == 1)
        await pilot.press("k")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmKill))
        asked = isinstance(app.screen, ConfirmKill)
        question = str(app.screen.query_one("#question").render()) if asked else ""
        await pilot.press("y")
        gone = await wait_for(pilot, lambda: len(rows(app)) == 0)
        print(json.dumps({"asked": asked, "question": question, "gone": gone}))
    """)
    assert seen["asked"] and "Kill session doomed?" in str(seen["question"])
    assert seen["gone"]
    assert json.loads(session_user.coop("ls", "--json").stdout) == []


def test_waiting_marker_appears_after_coop_notify(session_user: User) -> None:
    start(session_user, "asks", "sleep 0.5; coop-notify 'approve?'; exec sleep 1000")
    seen = pilot(session_user, """
        marked = await wait_for(pilot, lambda: rows(app) and rows(app)[0][0] == "●")
        print(json.dumps({"marked": marked, "rows": rows(app)}))
    """)
    assert seen["marked"], seen["rows"]


def test_new_session_from_the_workspace_picker(session_user: User) -> None:
    other = session_user.workspace.parent / "second-project"
    other.mkdir()
    (other / "Coopfile").write_text("agent: {command: 'sh -c \"echo picked; exec sleep 1000\"'}\n")
    session_user.chown(other)
    seen = pilot(session_user, f"""
        await wait_for(pilot, lambda: not app.preview.display)  # the first listing came
        await pilot.press("n")
        await wait_for(pilot, lambda: app.screen.query("#workspace"))
        field = app.screen.query_one("#workspace")
        field.value = {str(other)!r}
        await pilot.press("enter")
        ok = await wait_for(pilot, lambda: len(rows(app)) == 1)
        shown = await wait_for(pilot, lambda: "picked" in str(app.preview.render()))
        print(json.dumps({{"ok": ok, "rows": rows(app), "shown": shown}}))
    """)
    assert seen["ok"] and seen["rows"][0][1] == "second-project"  # type: ignore[index]
    assert seen["shown"]


def test_actions_are_in_the_command_palette(session_user: User) -> None:
    seen = pilot(session_user, """
        titles = [c.title for c in app.get_system_commands(app.screen)]
        print(json.dumps({"titles": titles}))
    """)
    for title in ("New session", "Attach", "New shell", "Restart agent", "Kill session",
                  "Serve on the LAN"):
        assert title in seen["titles"]  # type: ignore[operator]


def test_ptys_in_tabs_and_the_scrollback(session_user: User) -> None:
    start(session_user, "tabs", "for i in $(seq 1 80); do echo agent-line-$i; done; exec sh")
    seen = pilot(session_user, """
        await wait_for(pilot, lambda: len(rows(app)) == 1)
        await pilot.press("s")  # a new shell: the agent's tab and the shell's
        await wait_for(pilot, lambda: isinstance(app.screen.focused, Terminal))
        tabs = [str(t.label) for t in app.screen.query("Tab")]
        shell = app.screen.focused
        for key in "echo in-the-shell":
            await pilot.press(key if key != " " else "space")
        await pilot.press("enter")
        in_shell = await wait_for(pilot, lambda: "in-the-shell" in shell.text())
        await pilot.press("ctrl+pageup")
        switched = await wait_for(pilot, lambda: app.screen.focused is not shell and any(
            "agent-line-80" in l for l in app.screen.focused.text()))
        await pilot.press("shift+pageup")
        await wait_for(pilot, lambda: app.screen.query("#scrollback"))
        log = app.screen.query_one("#scrollback")
        lines = [str(line) for line in log.lines]
        print(json.dumps({"tabs": tabs, "in_shell": in_shell, "switched": switched,
                          "first": "agent-line-1" in lines, "last": "agent-line-80" in lines}))
    """)
    assert seen["tabs"] == ["agent", "shell 1"]
    assert seen["in_shell"] and seen["switched"]
    assert seen["first"] and seen["last"]  # lines that scrolled off the screen long ago


def test_filter_and_sort(session_user: User) -> None:
    start(session_user, "apple", "exec sleep 1000")
    start(session_user, "banana", "exec sleep 1000")
    start(session_user, "cherry", "echo recent; exec sleep 1000")
    seen = pilot(session_user, """
        await wait_for(pilot, lambda: len(rows(app)) == 3)
        await pilot.press("slash")
        await wait_for(pilot, lambda: app.focused is app.filter_field)  # not "n" for New
        for key in "banan":  # longer than anything a random tmp dir name holds
            await pilot.press(key)
        await wait_for(pilot, lambda: len(rows(app)) == 1)
        filtered = [r[1] for r in rows(app)]
        await pilot.press("enter")
        app.query_one("#filter").value = ""
        await wait_for(pilot, lambda: len(rows(app)) == 3)
        await pilot.press("o")  # by activity: the session that printed comes first
        await wait_for(pilot, lambda: rows(app)[0][1] == "cherry")
        print(json.dumps({"filtered": filtered, "by_activity": [r[1] for r in rows(app)]}))
    """)
    assert seen["filtered"] == ["banana"]
    assert seen["by_activity"][0] == "cherry"  # type: ignore[index]


def test_cursor_shape_and_visibility_follow_the_program(session_user: User) -> None:
    start(session_user, "cursor", "printf 'bar cursor\\033[6 q'; sleep 1; "
                                  "printf '\\033[?25l hidden'; exec sleep 1000")
    seen = pilot(session_user, """
        await wait_for(pilot, lambda: len(rows(app)) == 1)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen.focused, Terminal))
        term = app.screen.focused
        await wait_for(pilot, lambda: term.cursor_shape == "bar")
        shape = term.cursor_shape
        hidden = await wait_for(pilot, lambda: term.screen_model.cursor.hidden)
        print(json.dumps({"shape": shape, "hidden": hidden}))
    """)
    assert seen == {"shape": "bar", "hidden": True}


def test_web_action_shows_where_it_serves_and_stops_serving(session_user: User) -> None:
    """On loopback no QR code (a phone cannot open 127.0.0.1): how to serve for one."""
    from tests.helpers import TOKEN, free_port

    port = free_port()
    assert session_user.coop("serve", "--port", str(port), "--token", TOKEN).returncode == 0
    seen = pilot(session_user, """
        await wait_for(pilot, lambda: app.sub_title.startswith("web: serving on"))
        serving = app.sub_title
        await pilot.press("w")
        await wait_for(pilot, lambda: app.screen.query("#url"))
        qr = len(app.screen.query("#qr"))
        hint = str(app.screen.query_one("#hint").render())
        url = str(app.screen.query_one("#url").render())
        await pilot.press("x")
        await wait_for(pilot, lambda: not app.screen.query("#url"))

        async def stopped():
            return (await app.request({"cmd": "status"})).get("web") is None

        await until(pilot, stopped)
        print(json.dumps({"qr": qr, "hint": hint, "url": url, "serving": serving}))
    """)
    assert seen["url"] == f"http://127.0.0.1:{port}/?token={TOKEN}"
    assert seen["serving"] == f"web: serving on http://127.0.0.1:{port} · 0 browser terminal(s), " \
        "0 page(s) open"
    assert seen["qr"] == 0
    assert str(seen["hint"]).startswith("Only this machine can reach it.")
    assert "web: not serving" in session_user.coop("status").stdout.decode()


def test_enter_on_a_stopped_session_starts_it_again(session_user: User) -> None:
    from tests.helpers import crash_everything

    start(session_user, "phoenix", "cat $HOME/kept 2>/dev/null || "
                                   "{ echo from-before > $HOME/kept; echo first-run; }; "
                                   "exec sleep 1000")
    deadline = time.monotonic() + 60  # first-run is printed once the file is written
    while b"first-run" not in session_user.coop("logs", "phoenix").stdout:
        assert time.monotonic() < deadline, "the agent never ran"
        time.sleep(0.1)
    crash_everything(session_user)
    seen = pilot(session_user, """
        await wait_for(pilot, lambda: rows(app) and rows(app)[0][3] == "stopped")
        state = rows(app)[0][3]
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen.focused, Terminal))
        term = app.screen.focused
        back = await wait_for(pilot, lambda: any("from-before" in l for l in term.text()))
        print(json.dumps({"state": state, "back": back}))
    """)
    assert seen == {"state": "stopped", "back": True}
