"""Frames: round trips over every split, and garbage that must only ever be refused."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coop.ipc.framing import (
    CONTROL,
    DATA,
    MAX_FRAME,
    FrameParser,
    ProtocolError,
    decode_json,
    encode,
    encode_control,
    encode_data,
)
from tests.helpers import COOP, User

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                           max_leaves=10)
messages = st.dictionaries(st.text(max_size=10), json_values, max_size=5)


@given(st.lists(messages, min_size=1, max_size=5), st.data())
def test_request_frames_survive_any_split(frames: list[dict[str, Any]],
                                          data: st.DataObject) -> None:
    wire = b"".join(encode(m) for m in frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=6)))
    parser = FrameParser()
    out = []
    for start, end in zip([0, *cuts], [*cuts, len(wire)], strict=True):
        parser.feed(wire[start:end])
        out += [decode_json(body) for _, body in parser.frames()]
    assert out == frames


@given(st.lists(st.one_of(st.binary(max_size=50).map(lambda b: (DATA, b)),
                          messages.map(lambda m: (CONTROL, m))), max_size=6), st.data())
def test_stream_frames_survive_any_split(items: list[tuple[int, Any]],
                                         data: st.DataObject) -> None:
    wire = b"".join(encode_data(v) if k == DATA else encode_control(v) for k, v in items)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=6)))
    parser = FrameParser(stream=True)
    out: list[tuple[int, Any]] = []
    for start, end in zip([0, *cuts], [*cuts, len(wire)], strict=True):
        parser.feed(wire[start:end])
        out += [(k, b if k == DATA else json.loads(b)) for k, b in parser.frames()]
    assert out == items


@given(st.binary(max_size=200), st.booleans())
def test_garbage_is_refused_never_crashes(garbage: bytes, stream: bool) -> None:
    parser = FrameParser(stream=stream)
    parser.feed(garbage)
    try:
        for kind, body in parser.frames():
            if kind == CONTROL:
                decode_json(body)
    except ProtocolError as exc:
        assert exc.code in ("MESSAGE_TOO_LARGE", "INVALID_COMMAND")


def test_oversized_frame_is_refused_before_it_is_buffered() -> None:
    parser = FrameParser()
    parser.feed((MAX_FRAME + 1).to_bytes(4, "big"))
    with pytest.raises(ProtocolError, match="exceeds"):
        list(parser.frames())


FUZZ_CLIENT = """
import json, socket, sys
from coop.paths import coop_paths
path = str(coop_paths().run_dir / "daemon.sock")
for payload in json.loads(sys.stdin.read()):
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(path)
    sock.settimeout(0.3)
    try:
        sock.sendall(bytes.fromhex(payload))
        sock.recv(65536)
    except OSError:
        pass
    sock.close()
from coop.ipc.client import call
print(call(coop_paths(), {"cmd": "status"}, autostart=False)["ok"])
"""

frame_like = st.one_of(
    st.binary(max_size=64),
    messages.map(lambda m: encode({"version": 1}) + encode(m)),
    messages.map(lambda m: encode({"version": 1}) + encode_control(m)),
    st.binary(max_size=64).map(lambda b: encode({"version": 1}) + encode({"cmd": "attach"})
                               + encode_data(b)),
    st.integers(0, 2**32 - 1).map(lambda n: encode({"version": 1}) + n.to_bytes(4, "big")),
)


@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(frame_like, min_size=10, max_size=25))
def test_fuzzed_frames_never_kill_the_daemon(session_user: User, batch: list[bytes]) -> None:
    session_user.coop("ls")
    result = session_user.run([COOP[0], "-c", FUZZ_CLIENT],
                              input=json.dumps([b.hex() for b in batch]).encode())
    assert result.stdout == b"True\n", result.stderr
