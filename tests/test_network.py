"""Network policy from inside real sandboxes: the allow-list proxy and port forwards.

Servers the tests start run on the host's loopback (as the test process); the sandbox has
its own network namespace, so it can reach them only through coop's proxy, and only when
the allow list lets it.
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import ssl
import subprocess
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from coop.net.policy import AllowList, parse_ip
from coop.net.proxy import MAX_CLIENTS
from tests.helpers import Hello, User, free_port, hello_server, need

PROXY = "http://127.0.0.1:3128"


@pytest.fixture(scope="module")
def host_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    """An HTTP and an HTTPS server on the host's 127.0.0.1."""
    plain = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    tls = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    certs = tmp_path_factory.mktemp("certs")
    openssl = need("openssl", install="apt-get install openssl")
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(certs / "key.pem"),
                    "-out", str(certs / "cert.pem")], check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs / "cert.pem", certs / "key.pem")
    tls.socket = context.wrap_socket(tls.socket, server_side=True)
    for server in (plain, tls):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield plain.server_address[1], tls.server_address[1]
    plain.shutdown()
    tls.shutdown()


def coopfile(user: User, text: str) -> None:
    (user.workspace / "Coopfile").write_text(text)
    user.chown(user.workspace)


def sh(user: User, script: str) -> subprocess.CompletedProcess[bytes]:
    return user.coop("run", "--", "sh", "-c", script)


def py(user: User, code: str) -> subprocess.CompletedProcess[bytes]:
    return user.coop("run", "--", "python3", "-c", textwrap.dedent(code))


def test_allowed_ip_is_reached_through_the_proxy_with_curl_and_urllib(
        user: User, host_servers: tuple[int, int]) -> None:
    need("curl", install="apt-get install curl")
    http_port, https_port = host_servers
    coopfile(user, "network: {allow: [127.0.0.1]}\n")
    curl = sh(user, f"curl -sS --noproxy '' http://127.0.0.1:{http_port}/a; echo; "
                    f"curl -sS -k --noproxy '' https://127.0.0.1:{https_port}/b")
    assert curl.returncode == 0, curl.stderr
    assert curl.stdout.decode().split("\n") == ["hello from the host /a",
                                                "hello from the host /b"]
    urllib = py(user, f"""
        import os, ssl, urllib.request
        proxy = os.environ["HTTPS_PROXY"]
        del os.environ["no_proxy"], os.environ["NO_PROXY"]  # the host's 127.0.0.1: via proxy
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({{"http": proxy, "https": proxy}}),
            urllib.request.HTTPSHandler(context=ssl._create_unverified_context()))
        print(opener.open("http://127.0.0.1:{http_port}/c").read().decode())
        print(opener.open("https://127.0.0.1:{https_port}/d").read().decode())
    """)
    assert urllib.returncode == 0, urllib.stderr
    assert urllib.stdout.decode().split("\n")[:2] == ["hello from the host /c",
                                                      "hello from the host /d"]


def test_unlisted_host_is_refused_with_a_clear_error(user: User,
                                                     host_servers: tuple[int, int]) -> None:
    need("curl", install="apt-get install curl")
    http_port, _ = host_servers
    result = sh(user, f"curl -sS --noproxy '' -w ' %{{http_code}}' "
                      f"http://127.0.0.1:{http_port}/x; echo; "
                      "curl -sS -o /dev/null https://example.com/ 2>&1; echo")
    out = result.stdout.decode()
    assert "coop proxy: 127.0.0.1 is not on the allow list" in out and " 403" in out
    assert "add it to `network.allow`" in out and "coop allow" not in out  # no session here
    assert "CONNECT tunnel failed, response 403" in out
    assert b"coop: blocked 127.0.0.1:" in result.stderr
    assert b"coop: blocked example.com:443" in result.stderr


def wait_for_logs(user: User, session: str, needle: bytes, timeout: float = 120) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        text = user.coop("logs", session).stdout
        if needle in text or time.monotonic() > deadline:
            assert needle in text, text[-500:]
            return text
        time.sleep(0.2)


def test_coop_allow_lets_a_refused_host_through_for_the_session(
        session_user: User) -> None:
    need("curl", install="apt-get install curl")
    server = hello_server()
    port = server.server_address[1]
    fetch = f"curl -s --noproxy '' -w ' %{{http_code}}' http://127.0.0.1:{port}/approved"
    try:
        assert session_user.coop("-d", "-n", "asks", "--", "sh", "-c",
                                 f"while :; do {fetch}; echo; sleep 0.3; done").returncode == 0
        before = wait_for_logs(session_user, "asks", b" 403")
        assert b"coop allow 127.0.0.1 asks" in before  # the refusal says how to allow it
        allowed = session_user.coop("allow", "127.0.0.1", "asks")
        assert allowed.returncode == 0, allowed.stderr
        assert b"127.0.0.1 is allowed in asks until it ends" in allowed.stdout
        wait_for_logs(session_user, "asks", b"hello from the host /approved 200")
        [info] = json.loads(session_user.coop("ls", "--json").stdout)
        assert info["network_approved"] == ["127.0.0.1"]
        bad = session_user.coop("allow", "no such host!", "asks")
        assert bad.returncode == 1 and b"is not a host name or IP address" in bad.stderr
    finally:
        server.shutdown()


def test_direct_connections_to_host_loopback_fail(user: User,
                                                  host_servers: tuple[int, int]) -> None:
    http_port, _ = host_servers
    coopfile(user, "network: {allow: [127.0.0.1]}\n")  # even when listed: only via the proxy
    result = py(user, f"""
        import socket
        try:
            socket.create_connection(("127.0.0.1", {http_port}), timeout=2)
            print("connected")
        except OSError as exc:
            print("refused", exc.errno)
    """)
    assert result.stdout.startswith(b"refused"), result.stdout


def test_names_resolving_to_private_addresses_are_refused() -> None:
    allow = AllowList(["*.corp.example", "intranet.example", "10.1.2.3"], defaults=False)
    loopback, private = parse_ip("127.0.0.1"), parse_ip("10.9.9.9")
    metadata, public = parse_ip("169.254.169.254"), parse_ip("93.184.216.34")
    assert loopback and private and metadata and public
    assert allow.check_name("build.corp.example").allowed
    assert not allow.check_address("build.corp.example", loopback).allowed  # rebinding
    assert not allow.check_address("build.corp.example", metadata).allowed
    assert allow.check_address("build.corp.example", public).allowed
    assert allow.check_address("intranet.example", private).allowed  # listed by name
    assert allow.check_name("10.1.2.3").allowed and not allow.check_name("10.1.2.4").allowed
    assert not allow.check_address("x.corp.example", parse_ip("::ffff:127.0.0.1")).allowed  # type: ignore[arg-type]
    assert not allow.check_name("corp.example").allowed  # a wildcard is not its apex
    assert AllowList([]).check_name("api.anthropic.com").allowed  # the defaults
    assert AllowList([]).check_name("registry.npmjs.org").allowed
    # Approved while the session runs: let through, but never onto a private address.
    allow.approve("pypi.internal.example")
    assert allow.check_name("pypi.internal.example").allowed
    assert allow.check_address("pypi.internal.example", public).allowed
    assert not allow.check_address("pypi.internal.example", private).allowed
    allow.approve("10.9.9.9")
    assert allow.check_name("10.9.9.9").allowed


@pytest.mark.skipif(os.getuid() != 0, reason="needs an /etc/hosts entry (root)")
def test_dns_rebinding_to_loopback_is_refused_end_to_end(
        user: User, host_servers: tuple[int, int]) -> None:
    need("curl", install="apt-get install curl")
    http_port, _ = host_servers
    hosts = Path("/etc/hosts")
    saved = hosts.read_text()
    hosts.write_text(saved + "127.0.0.1 rebind.coop-test.invalid\n")
    try:
        coopfile(user, "network: {allow: ['*.coop-test.invalid']}\n")
        result = sh(user, f"curl -sS http://rebind.coop-test.invalid:{http_port}/")
    finally:
        hosts.write_text(saved)
    assert b"rebind.coop-test.invalid resolves to 127.0.0.1, a private or local address" \
        in result.stdout, result.stdout
    assert b"hello from the host" not in result.stdout


def test_many_parallel_connections_all_complete(user: User,
                                                host_servers: tuple[int, int]) -> None:
    http_port, _ = host_servers
    coopfile(user, "network: {allow: [127.0.0.1]}\n")
    result = py(user, f"""
        import concurrent.futures, os, urllib.request
        proxy = os.environ["HTTP_PROXY"]
        del os.environ["no_proxy"], os.environ["NO_PROXY"]
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({{"http": proxy}}))
        def get(i):
            return opener.open(f"http://127.0.0.1:{http_port}/{{i}}", timeout=120).read()
        with concurrent.futures.ThreadPoolExecutor(64) as pool:
            bodies = list(pool.map(get, range(300)))
        print(sum(b == f"hello from the host /{{i}}".encode() for i, b in enumerate(bodies)))
    """)
    assert result.stdout.strip() == b"300", result.stderr


def test_idle_clients_do_not_exhaust_the_proxy(user: User,
                                               host_servers: tuple[int, int]) -> None:
    http_port, _ = host_servers
    coopfile(user, "network: {allow: [127.0.0.1]}\n")
    # More silent connections than the proxy serves at once: a newcomer evicts the oldest
    # (a proxy that refused it would make urllib fail). Not timed: a loaded machine is slow.
    result = py(user, f"""
        import os, socket, urllib.request
        idle = [socket.create_connection(("127.0.0.1", 3128)) for _ in range({MAX_CLIENTS + 88})]
        proxy = os.environ["HTTP_PROXY"]
        del os.environ["no_proxy"], os.environ["NO_PROXY"]
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({{"http": proxy}}))
        print(opener.open("http://127.0.0.1:{http_port}/ok", timeout=300).read().decode())
    """)
    assert result.stdout.decode().startswith("hello from the host /ok"), result.stderr


def test_ports_forward_into_the_sandbox_and_denials_are_logged(session_user: User) -> None:
    need("curl", install="apt-get install curl")
    host_port = free_port()
    coopfile(session_user, f"ports: ['{host_port}:8000']\n")
    (session_user.workspace / "index.html").write_text("served from the sandbox\n")
    session_user.chown(session_user.workspace)
    result = session_user.coop("-d", "--", "sh", "-c",
                               "curl -s https://example.com/ >/dev/null; "
                               "exec python3 -m http.server 8000 --bind 127.0.0.1")
    assert result.returncode == 0, result.stderr
    body = b""
    deadline = time.monotonic() + 120  # the session starts, then its server: however slowly
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", host_port), timeout=30) as conn:
                conn.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
                body = b"".join(iter(lambda: conn.recv(65536), b""))
            if body:
                break
        except OSError:
            pass
        time.sleep(0.1)
    assert body.endswith(b"served from the sandbox\n"), body
    logs = session_user.coop("logs", "--network").stdout.decode()
    assert "denied example.com:443: example.com is not on the allow list" in logs
    ls = json.loads(session_user.coop("ls", "--json").stdout)
    assert ls[0]["name"] == "project"


VETH_WORLD = r"""
ip link set lo up
unshare -n sleep 1000 & WORLD=$!
until [ "$(readlink /proc/$WORLD/ns/net)" != "$(readlink /proc/$$/ns/net)" ]; do sleep 0.05; done
ip link add wan0 type veth peer name wan1
ip link set wan1 netns $WORLD
ip addr add 198.51.100.2/24 dev wan0
ip link set wan0 up
nsenter -t $WORLD -n sh -c 'ip link set lo up; ip addr add 198.51.100.1/24 dev wan1;
  ip link set wan1 up'
WWW=$(mktemp -d)
echo "hello from the internet" > "$WWW/marker"
cd "$WWW"
nsenter -t $WORLD -n "$PY" -m http.server 8080 --bind 198.51.100.1 >/dev/null 2>&1 & A=$!
"$PY" -m http.server 8081 --bind 198.51.100.2 >/dev/null 2>&1 & B=$!
"$PY" -m http.server 8082 --bind 127.0.0.1 >/dev/null 2>&1 & C=$!
for url in http://198.51.100.1:8080/marker http://198.51.100.2:8081/ http://127.0.0.1:8082/; do
  until curl -s -o /dev/null --max-time 10 "$url"; do sleep 0.1; done  # the servers are up
done
cd "$WORKSPACE"
"$@"
status=$?
kill $WORLD $A $B $C 2>/dev/null
rm -rf "$WWW"
exit $status
"""


@pytest.mark.skipif(os.getuid() != 0, reason="veth needs root")
def test_veth_reaches_the_internet_but_not_the_host(world_tmp: Path) -> None:
    """In a network namespace the test makes (the 'host'), with another one as 'the
    internet': the sandbox reaches a server out there, and neither the host's own address
    nor the host's loopback."""
    for tool, package in (("curl", "curl"), ("ip", "iproute2"), ("unshare", "util-linux"),
                          ("nsenter", "util-linux")):
        need(tool, install=f"apt-get install {package}")
    workspace = world_tmp / "project"
    workspace.mkdir()
    probe = ("curl -s --max-time 60 http://198.51.100.1:8080/marker; "
             "curl -s --max-time 3 http://198.51.100.2:8081/ >/dev/null && echo HOST-REACHED; "
             "curl -s --max-time 3 http://127.0.0.1:8082/ >/dev/null && echo LOOPBACK-REACHED; "
             "ip -4 addr show eth0 | grep -o 'inet [0-9./]*'; true")
    env = {**os.environ, "WORKSPACE": str(workspace), "COOP_HOME": str(world_tmp / "coop"),
           "PY": COOP_CMD[0]}
    result = subprocess.run(["unshare", "-n", "sh", "-c", VETH_WORLD, "sh",
                             *COOP_CMD, "run", "--network", "veth", "--", "sh", "-c", probe],
                            capture_output=True, env=env, timeout=600)
    out = result.stdout.decode()
    assert "hello from the internet" in out, result.stderr.decode()
    assert "HOST-REACHED" not in out and "LOOPBACK-REACHED" not in out
    assert "inet 10.233.0.2/30" in out


def test_veth_without_root_is_a_clear_error(user: User) -> None:
    result = user.coop("run", "--network", "veth", "--", "true")
    if user.is_root:
        return
    assert result.returncode == 1
    assert b"network mode veth needs coop to run as root" in result.stderr


COOP_CMD = [os.environ.get("COOP_PYTHON", __import__("sys").executable), "-m", "coop"]
