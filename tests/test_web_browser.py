"""The browser page of `coop serve`, in a real headless Chromium (Debian's, driven by
Playwright), against a real daemon run by the unprivileged test user: desktop 1280×800
and a phone at 390×844 with touch. What is asserted is what the user sees on the page
(xterm.js's own buffer, the session list, the banner) and what the agent receives.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from coop.pty.filter import WARNING
from tests.helpers import (
    COOP,
    TOKEN,
    User,
    crash_everything,
    hello_server,
    screen_of,
    spawn_on_pty,
)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = Path(os.environ.get("COOP_SCREENSHOTS") or
                   Path(__file__).resolve().parent.parent / "build" / "screenshots")
TIMEOUT_MS = 60_000
"""For every wait on a page: a loaded machine is slow, not wrong (what is awaited is a
condition, so a generous limit costs nothing when things work)."""
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
# Shows each read from its terminal as a Python bytes literal: what exactly the page sent.
# It asks for bracketed paste, as agents do.
BYTES_AGENT = ("python3 -c \"import os,tty; tty.setraw(0)\n"
               "os.write(1, b'\\x1b[?2004hready\\r\\n')\n"
               "while True: os.write(1, repr(os.read(0, 1024)).encode() + b'\\r\\n')\"")


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    """One driver per module: the sync API allows one per thread."""
    if not os.path.exists(CHROMIUM):
        pytest.skip("chromium not installed: apt-get install chromium fonts-dejavu-core "
                    "(README, Prerequisites)")
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    chromium = playwright.chromium.launch(
        executable_path=CHROMIUM,
        args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--disable-background-networking"])
    yield chromium
    chromium.close()


def patient(context: BrowserContext) -> BrowserContext:
    context.set_default_timeout(TIMEOUT_MS)
    return context


def desktop(browser: Browser) -> BrowserContext:
    return patient(browser.new_context(viewport=DESKTOP,  # type: ignore[arg-type]
                                       color_scheme="dark"))


def phone(browser: Browser) -> BrowserContext:
    return patient(browser.new_context(viewport=PHONE, is_mobile=True,  # type: ignore[arg-type]
                                       has_touch=True, device_scale_factor=2,
                                       color_scheme="light"))


def open_page(context: BrowserContext, base: str, session: str = "", pty: int = 0,
              token: str = TOKEN) -> Page:
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{base}/?token={token}" + (f"#{session}/{pty}" if session else ""))
    assert "token" not in page.url  # a cookie from now on, the address bar is clean
    page.wait_for_function("() => window.coop && coop.ui.link && "
                           "coop.ui.link.ws.readyState === 1")
    assert not errors, errors
    return page


def screen(page: Page) -> str:
    return str(page.evaluate("coop.screen()"))


def wait_screen(page: Page, text: str) -> None:
    page.wait_for_function("text => coop.screen().includes(text)", arg=text)


def repainted(page: Page) -> None:
    """Wait until the page's current connection has drawn its first data: the snapshot
    the supervisor sends on every (re)connection."""
    page.wait_for_function("() => coop.ui.link.ws.readyState === 1 && !coop.ui.link.fresh "
                           "&& coop.ui.link.done > 0")


def start(user: User, name: str, command: str) -> None:
    result = user.coop("-d", "-n", name, "--", "sh", "-c", command)
    assert result.returncode == 0, result.stderr


def agent_alive(user: User, name: str) -> bool:
    sessions = {s["name"]: s for s in json.loads(user.coop("ls", "--json").stdout)}
    return bool(sessions[name]["ptys"][0]["alive"])


def session_page(browser: Browser, served: tuple[User, str], name: str, command: str,
                 make: Callable[[Browser], BrowserContext] | None = None,
                 ) -> tuple[User, BrowserContext, Page]:
    """A new session running `command`, open in a page (desktop unless `make` says)."""
    user, base = served
    start(user, name, command)
    context = (make or desktop)(browser)
    return user, context, open_page(context, base, name)


def shell_page(browser: Browser, served: tuple[User, str],
               name: str) -> tuple[User, BrowserContext, Page]:
    """A session whose agent is `sh` with the prompt `NAME$`, open in a desktop page."""
    user, context, page = session_page(browser, served, name, f"PS1='{name}$ ' exec sh")
    wait_screen(page, f"{name}$")
    return user, context, page


def type_line(page: Page, text: str) -> None:
    page.keyboard.type(text)
    page.keyboard.press("Enter")


def shoot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name))


def test_desktop_lists_sessions_and_typing_reaches_the_pty(
        browser: Browser, served: tuple[User, str]) -> None:
    user, base = served
    start(user, "alpha", "printf '\\033[1;35m✻ Welcome to the agent\\033[0m \\033[2m(a shell "
                         "standing in for one)\\033[0m\\n\\n'; PS1='alpha$ ' exec sh")
    start(user, "beta", "printf 'beta here\\n'; coop-notify 'approve the plan?'; "
                        "exec sleep 1000")
    context = desktop(browser)
    page = open_page(context, base, "alpha")
    names = page.locator("#session-list li .s-name").all_inner_texts()
    assert [n.split()[0] for n in names] == ["alpha", "beta"]
    page.wait_for_function("() => document.querySelector('#session-list li')"
                           ".innerText.includes('1 web')")
    assert page.locator("#session-list li", has_text="alpha").locator(".s-active") \
        .inner_text().endswith("s ago")  # when it last printed
    wait_screen(page, "alpha$")
    type_line(page, "echo typed-$((6*7))")
    wait_screen(page, "typed-42")
    assert page.locator(".tab.current").inner_text().startswith("agent")
    page.locator("#session-list li", has_text="beta").click()
    wait_screen(page, "beta here")
    page.locator("#session-list li", has_text="alpha").click()
    wait_screen(page, "typed-42")  # repainted from the snapshot
    page.locator("#session-list li", has_text="beta").locator(".waiting-mark").wait_for()
    shoot(page, "desktop.png")
    context.close()

    # A phone follows the agent's size while a desktop is looking, until "fit" claims it
    # for its own screen.
    watcher = desktop(browser)
    open_page(watcher, base, "alpha")
    context = phone(browser)
    page = open_page(context, base, "alpha")
    wait_screen(page, "typed-42")
    assert page.evaluate("coop.term.cols") > 100  # the desktop's size
    assert page.locator("#fit").get_attribute("aria-pressed") != "true"
    page.locator("#fit").tap()
    page.locator("#compose-text").fill("stty size")
    page.locator("#compose-send").tap()
    rows, cols = page.evaluate("[coop.term.rows, coop.term.cols]")
    assert cols < 60
    wait_screen(page, f"{rows} {cols}")
    shoot(page, "phone.png")
    desk = watcher.pages[0]
    type_line(desk, "echo desk-$((1+1))")  # the desktop types: its size is the latest
    page.wait_for_function("() => coop.term.cols > 100")  # the phone follows it again
    assert page.locator("#fit").get_attribute("aria-pressed") == "false"
    wait_screen(page, "desk-2")
    desk_size = desk.evaluate("`${coop.term.rows} ${coop.term.cols}`")
    page.locator("#compose-text").fill("stty size")  # typing from the phone now…
    page.locator("#compose-send").tap()
    wait_screen(page, f"\n{desk_size}")  # …leaves the size the desktop set
    context.close()
    watcher.close()


def test_phone_key_bar_and_compose_box(browser: Browser, served: tuple[User, str]) -> None:
    _, context, page = session_page(browser, served, "keys", BYTES_AGENT, make=phone)
    wait_screen(page, "ready")
    # Alone on the session, the phone took its own screen's size.
    assert page.locator("#fit").get_attribute("aria-pressed") == "true"
    assert page.evaluate("coop.term.cols") < 60
    assert page.locator("#keybar").is_visible() and page.locator("#compose").is_visible()
    assert not page.locator("#sessions").is_visible() or \
        page.locator("#sessions").bounding_box()["x"] < 0  # type: ignore[index]
    page.locator("#terminal").tap()  # tap to focus

    def key(label: str) -> None:
        page.locator("#keybar button", has_text=label).first.tap()

    key("Esc")
    wait_screen(page, "b'\\x1b'")
    key("Tab")
    wait_screen(page, "b'\\t'")
    for label, sent in (("←", "b'\\x1b[D'"), ("↑", "b'\\x1b[A'"), ("→", "b'\\x1b[C'"),
                        ("↓", "b'\\x1b[B'")):
        key(label)
        wait_screen(page, sent)
    key("Ctrl")
    page.keyboard.type("a")
    wait_screen(page, "b'\\x01'")
    key("Alt")
    page.keyboard.type("b")
    wait_screen(page, "b'\\x1bb'")
    key("^C")
    wait_screen(page, "b'\\x03'")
    page.locator("#compose-text").fill("fix the tests\nthen commit")
    page.locator("#compose-send").tap()
    wait_screen(page, "b'\\x1b[200~fix the tests\\rthen commit\\x1b[201~\\r'")
    assert page.locator("#compose-text").input_value() == ""
    page.locator("#drawer-toggle").tap()
    page.locator("#session-list li", has_text="keys").wait_for(state="visible")
    page.wait_for_timeout(300)  # the drawer slides in
    shoot(page, "phone-drawer.png")
    page.mouse.click(370, 400)  # beside the drawer: it closes
    page.locator("#sessions").wait_for(state="hidden")
    page.locator("#drawer-toggle").tap()
    page.locator("#session-list li", has_text="keys").tap()
    page.locator("#sessions").wait_for(state="hidden")
    context.close()


def test_ctrl_d_and_exit_are_blocked_with_the_warning(
        browser: Browser, served: tuple[User, str]) -> None:
    user, context, page = shell_page(browser, served, "guarded")
    type_line(page, "exit")
    page.locator("#banner", has_text=WARNING).wait_for(state="visible")
    assert "⚠" in page.locator(".tab.current").inner_text()  # the marker stays on the tab
    page.keyboard.press("Control+d")
    page.wait_for_timeout(300)
    type_line(page, "echo still-$((3*3))")
    wait_screen(page, "still-9")
    assert agent_alive(user, "guarded")
    context.close()


def test_two_browsers_and_a_local_attach_see_the_same_screen(
        browser: Browser, served: tuple[User, str]) -> None:
    user, base = served
    start(user, "shared", "PS1='shared$ ' exec sh")
    first_context, second_context = desktop(browser), desktop(browser)
    first = open_page(first_context, base, "shared")
    second = open_page(second_context, base, "shared")
    local = spawn_on_pty(user, COOP + ["attach", "shared"], size=(30, 100))
    local.read_until(b"shared$")
    type_line(first, "echo from-the-first-$((5*5))")
    wait_screen(second, "from-the-first-25")
    local.read_until(b"from-the-first-25")
    local.write(b"echo from-the-$((2*2))-terminal\r")  # typing: its 30x100 is the latest
    for page in (first, second):
        wait_screen(page, "from-the-4-terminal")
        page.wait_for_function("() => coop.term.rows === 30 && coop.term.cols === 100")
    # The same screen in both pages and the terminal, cell for cell (as text), once every
    # one of them has drawn all of it: the prompt after the echo.
    local.read_until(b"from-the-4-terminal\r\nshared$ ")
    expected = "\n".join(line.rstrip() for line in screen_of(bytes(local.output), 30, 100))
    for page in (first, second):
        with contextlib.suppress(PlaywrightTimeout):  # the assertion shows what differs
            page.wait_for_function("text => coop.screen() === text", arg=expected)
        assert screen(page) == expected
    local.write(b"\x1d")  # detach
    assert local.wait() == 0
    first_context.close()
    second_context.close()


def test_the_page_reconnects_after_the_server_drops_it(
        browser: Browser, served: tuple[User, str]) -> None:
    user, context, page = shell_page(browser, served, "steady")
    base = served[1]
    type_line(page, "echo before-the-$((1+1))-drop")  # the output differs from the input
    wait_screen(page, "before-the-2-drop")
    before = screen(page)
    port = base.rsplit(":", 1)[1]
    assert user.coop("serve", "--stop").returncode == 0
    page.wait_for_function("() => document.querySelector('#conn').className.includes('down')")
    assert user.coop("serve", "--port", port, "--token", TOKEN).returncode == 0
    page.wait_for_function("() => coop.ui.link.ws.readyState === 1 && "
                           "document.querySelector('#conn').textContent === 'live'")
    repainted(page)
    assert screen(page) == before  # repainted from the snapshot, not appended to
    type_line(page, "echo after-the-$((1+2))-drop")
    wait_screen(page, "after-the-3-drop")
    context.close()


def test_new_shell_then_kill_with_confirmation(browser: Browser,
                                              served: tuple[User, str]) -> None:
    user, context, page = session_page(browser, served, "doomed", "exec sleep 1000")
    page.locator("#new-shell").click()
    page.locator(".tab.current", has_text="shell").wait_for()
    page.wait_for_function("() => coop.ui.link.ws.readyState === 1")
    type_line(page, "echo in-the-shell-$((2+2))")
    wait_screen(page, "in-the-shell-4")
    page.locator("#kill").click()
    assert page.locator("#confirm").is_visible()
    assert "doomed" in page.locator("#confirm-text").inner_text()
    page.locator("#confirm button", has_text="Cancel").click()
    page.locator("#confirm").wait_for(state="hidden")
    assert [s["name"] for s in json.loads(user.coop("ls", "--json").stdout)] == ["doomed"]
    page.locator("#kill").click()
    page.locator("#confirm-ok").click()
    page.locator("#empty").wait_for(state="visible")
    assert json.loads(user.coop("ls", "--json").stdout) == []
    context.close()


def test_read_only_link_shows_but_cannot_type(browser: Browser,
                                              served: tuple[User, str]) -> None:
    user, base = served
    start(user, "watched", "PS1='watched$ ' exec sh")
    viewer_url = json.loads(user.coop("serve", "--json").stdout)["read_only_url"]
    context = desktop(browser)
    page = open_page(context, base, "watched", token=viewer_url.split("token=")[1])
    wait_screen(page, "watched$")
    assert not page.locator("#kill").is_visible() and not page.locator("#new-shell").is_visible()
    page.locator("#terminal").click()
    type_line(page, "echo sneaky")
    page.wait_for_timeout(500)
    assert "sneaky" not in screen(page)
    context.close()


def test_a_notification_when_an_agent_starts_waiting(browser: Browser,
                                                     served: tuple[User, str]) -> None:
    user, base = served
    # It starts waiting once the page is open (a file the test makes), however slow that is.
    start(user, "asks", "until [ -e asked ]; do sleep 0.1; done; "
                        "coop-notify 'approve the plan?'; exec sleep 1000")
    context = desktop(browser)
    context.grant_permissions(["notifications"])
    # Chromium headless has no notification centre: record what the page asks for.
    context.add_init_script("""
        window.__notes = [];
        window.Notification = class { constructor(title, options) {
            window.__notes.push({title, body: options && options.body}); }
          static get permission() { return 'granted'; }
          static requestPermission() { return Promise.resolve('granted'); } };
    """)
    page = open_page(context, base, "asks")
    (user.workspace / "asked").touch()
    page.wait_for_function("() => window.__notes.length > 0")
    notes: list[dict[str, Any]] = page.evaluate("window.__notes")
    assert notes[0] == {"title": "asks is waiting for you", "body": "approve the plan?"}
    page.locator("#session-list li .waiting-mark").wait_for()
    assert page.title().startswith("(1)")
    context.close()


def test_ctrl_c_confirm_mode_asks_on_the_page_first(browser: Browser,
                                                    served: tuple[User, str]) -> None:
    user = served[0]
    (user.workspace / "Coopfile").write_text("input_filter: {ctrl_c: confirm}\n")
    user.chown(user.workspace)
    _, context, page = session_page(browser, served, "careful", BYTES_AGENT)
    wait_screen(page, "ready")
    page.locator("#terminal").click()
    page.keyboard.press("Control+c")
    page.locator("#confirm").wait_for(state="visible")
    assert "Ctrl+C" in page.locator("#confirm-text").inner_text()
    page.wait_for_timeout(300)
    assert "x03" not in screen(page)  # held until the user says so
    page.locator("#confirm-ok").click()
    wait_screen(page, "b'\\x03'")
    context.close()


def test_osc52_copies_land_in_the_browser_clipboard(browser: Browser,
                                                    served: tuple[User, str]) -> None:
    _, context, page = session_page(
        browser, served, "copier", "read go; printf '\\033]52;c;%s\\007' "
                                   "\"$(printf 'copied by the agent' | base64)\"; exec sleep 1000")
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=served[1])
    page.locator("#terminal").click()
    page.keyboard.press("Enter")
    page.wait_for_function("() => navigator.clipboard.readText()"
                           ".then(text => text === 'copied by the agent')")
    context.close()


def test_new_session_from_the_page_and_a_broken_coopfile_named(
        browser: Browser, served: tuple[User, str]) -> None:
    user, base = served
    good = user.workspace.parent / "from-the-web"
    good.mkdir()
    (good / "Coopfile").write_text("agent: {command: 'sh -c \"echo started from the web; "
                                   "exec sleep 1000\"'}\n")
    broken = user.workspace.parent / "broken"
    broken.mkdir()
    (broken / "Coopfile").write_text("agent:\n  comand: sh\n")
    user.chown(good)
    user.chown(broken)
    context = desktop(browser)
    page = context.new_page()
    page.goto(f"{base}/?token={TOKEN}")
    page.locator("#empty").wait_for()
    page.locator("#new-workspace").fill(str(broken))
    page.locator("#new-session button").click()
    page.locator("#banner", has_text="comand").wait_for(state="visible")
    assert "Coopfile:2" in page.locator("#banner").inner_text()  # the file, line and key
    page.locator("#new-workspace").fill(str(good))
    page.locator("#new-session button").click()
    wait_screen(page, "started from the web")
    assert page.locator("#session-list li").all_inner_texts()[0].startswith("from-the-web")
    context.close()


def test_chromium_finds_the_page_installable(tmp_path: Path, playwright: Playwright,
                                            served: tuple[User, str]) -> None:
    _, base = served
    local = base.replace("127.0.0.1", "localhost")  # a secure context, as https would be
    # Not incognito (a persistent profile): Chromium offers no install there.
    context = patient(playwright.chromium.launch_persistent_context(
        str(tmp_path / "profile"), executable_path=CHROMIUM,
        args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]))
    page = context.new_page()
    page.goto(f"{local}/?token={TOKEN}")
    page.wait_for_function("() => window.coop !== undefined")
    cdp = context.new_cdp_session(page)
    manifest = cdp.send("Page.getAppManifest")
    errors = cdp.send("Page.getInstallabilityErrors")["installabilityErrors"]
    context.close()
    assert manifest["errors"] == [] and manifest["manifest"]["display"] == "kStandalone"
    assert errors == []


def test_history_shows_earlier_output_as_text(browser: Browser,
                                              served: tuple[User, str]) -> None:
    _, context, page = session_page(
        browser, served, "chatty",
        "i=1; while [ $i -le 300 ]; do printf '\\033[32mline %d\\033[0m\\n' $i; i=$((i+1)); done;"
        " exec sleep 1000")
    wait_screen(page, "line 300")
    assert "line 1\n" not in screen(page) + "\n"  # scrolled off before the page came
    page.locator("#history-open").click()
    history = page.locator("#history-text")
    history.wait_for(state="visible")
    text = history.inner_text()
    assert text.startswith("line 1\nline 2\n") and "line 300" in text
    assert "\x1b" not in text and "[32m" not in text
    assert page.evaluate("(() => { const e = document.getElementById('history-text');"
                         " return e.scrollTop + e.clientHeight >= e.scrollHeight - 2; })()")
    page.locator("#history button", has_text="Close").click()
    page.locator("#history").wait_for(state="hidden")
    context.close()


def test_the_page_over_tls(browser: Browser, session_user: User) -> None:
    from tests.helpers import free_port

    port = free_port()
    served = session_user.coop("serve", "--port", str(port), "--token", TOKEN, "--tls",
                               "--json")
    assert served.returncode == 0, served.stderr
    start(session_user, "secure", "PS1='secure$ ' exec sh")
    # The user accepts the self-signed certificate (after comparing its fingerprint).
    context = patient(browser.new_context(viewport=DESKTOP,  # type: ignore[arg-type]
                                          ignore_https_errors=True))
    page = open_page(context, f"https://127.0.0.1:{port}", "secure")
    assert page.url.startswith("https://")
    wait_screen(page, "secure$")
    type_line(page, "echo over-$((6*7))-wss")
    wait_screen(page, "over-42-wss")
    context.close()


def test_a_refused_host_is_approved_from_the_page(browser: Browser,
                                                  served: tuple[User, str]) -> None:
    server = hello_server()
    port = server.server_address[1]
    fetch = f"curl -s --noproxy '' -w ' %{{http_code}}' http://127.0.0.1:{port}/from-the-page"
    try:
        _, context, page = session_page(browser, served, "netty",
                                        f"while :; do {fetch}; echo; sleep 0.5; done")
        bar = page.locator(".approval", has_text="127.0.0.1")
        bar.wait_for()
        assert "netty: the agent was refused 127.0.0.1" in bar.inner_text()
        assert "not on the allow list" in bar.inner_text()  # why
        bar.locator("button", has_text="Allow for this session").click()
        wait_screen(page, "hello from the host /from-the-page 200")
        assert page.locator(".approval").count() == 0
        context.close()
    finally:
        server.shutdown()


def test_a_crashed_agent_is_restarted_from_the_page(browser: Browser,
                                                   served: tuple[User, str]) -> None:
    user, base = served
    (user.workspace / "Coopfile").write_text(
        "agent:\n  command: sh -c 'n=$(cat count 2>/dev/null || echo 0); n=$((n+1));"
        " echo $n > count; echo attempt-$n; exit 3'\n  restart_delay_ms: 100\n")
    user.chown(user.workspace)
    assert user.coop("-d", "-n", "crashy").returncode == 0
    context = desktop(browser)
    page = open_page(context, base, "crashy")
    page.locator(".tab", has_text="crashed").wait_for()
    attempts = int((user.workspace / "count").read_text())
    page.locator("#restart").click()  # not running: no question to answer
    page.wait_for_function("n => coop.screen().includes(`attempt-${n + 1}`)", arg=attempts)
    assert int((user.workspace / "count").read_text()) > attempts
    context.close()


def test_a_page_whose_token_was_replaced_says_so(browser: Browser,
                                                 served: tuple[User, str]) -> None:
    user, context, page = shell_page(browser, served, "renewed")
    port = served[1].rsplit(":", 1)[1]
    assert user.coop("serve", "--stop").returncode == 0
    assert user.coop("serve", "--port", port, "--token", "a-new-token-" + TOKEN).returncode == 0
    page.locator("#banner", has_text="This link no longer works").wait_for()
    assert page.locator("#conn").inner_text() == "link expired"
    context.close()


def test_a_stopped_session_is_started_again_from_the_page(browser: Browser,
                                                         served: tuple[User, str]) -> None:
    user, base = served
    agent = ("cat $HOME/kept 2>/dev/null || { echo from-before > $HOME/kept; echo first-run; };"
             " exec sleep 1000")  # the file is there once the page shows first-run
    _, context, page = session_page(browser, served, "phoenix", agent)
    wait_screen(page, "first-run")
    crash_everything(user)  # the web server went with the daemon: serve again
    port = base.rsplit(":", 1)[1]
    assert user.coop("serve", "--port", port, "--token", TOKEN).returncode == 0
    page.locator("#stopped-text", has_text="phoenix is stopped").wait_for()
    page.locator("#start-again").click()
    wait_screen(page, "from-before")  # its files came back with it
    context.close()
