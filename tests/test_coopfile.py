"""The Coopfile: validation messages, extends, merging, env expansion, coop.toml."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from coop.config.coopfile import load_config, merge
from coop.config.expand import expand_env
from coop.errors import ConfigError
from coop.paths import coop_paths
from tests.helpers import User


def load(tmp_path: Path, text: str, name: str = "Coopfile", **files: str) -> object:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    ws = tmp_path / "ws"
    ws.mkdir(exist_ok=True)
    (ws / name).write_text(text)
    for rel, content in files.items():
        path = ws / rel.replace("__", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    paths = coop_paths({"COOP_HOME": str(tmp_path / "coop"), "HOME": str(home)})
    return load_config(paths, ws, home=home)


def error_of(tmp_path: Path, text: str, **files: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, **files)
    return info.value.render()


def test_unknown_key_names_file_line_column_and_suggests(tmp_path: Path) -> None:
    message = error_of(tmp_path, "image: host\nagent:\n  comand: claude\n")
    assert message.startswith(f"{tmp_path}/ws/Coopfile:3:3: `agent.comand` is not a known key.")
    assert "Did you mean `agent.command`?" in message


def test_wrong_type(tmp_path: Path) -> None:
    message = error_of(tmp_path, "setup: apt-get install git\n")
    assert message.startswith(f"{tmp_path}/ws/Coopfile:1:8: `setup` must be a list of strings, "
                              "not a string.")


def test_wrong_type_in_a_list_names_the_index(tmp_path: Path) -> None:
    message = error_of(tmp_path, "network:\n  allow:\n    - ok.example.com\n    - 42\n")
    assert "Coopfile:4:7: `network.allow[1]` must be a string, not a number." in message


def test_unknown_network_mode_suggests(tmp_path: Path) -> None:
    message = error_of(tmp_path, "network: {mode: hots}\n")
    assert "`network.mode` is 'hots'" in message and "Did you mean `host`?" in message


def test_bad_image_reference(tmp_path: Path) -> None:
    message = error_of(tmp_path, "image: Node:22 bookworm\n")
    assert "Coopfile:1:8: `image` is not a valid image reference" in message


def test_duplicate_keys_and_yaml_syntax(tmp_path: Path) -> None:
    assert "duplicate key `image`" in error_of(tmp_path, "image: host\nimage: host\n")
    assert "Coopfile:2:2: invalid YAML" in error_of(tmp_path, "a: [1\nb: 2\n")


def test_extends_cycle(tmp_path: Path) -> None:
    message = error_of(tmp_path, "extends: [a.yaml]\n",
                       **{"a.yaml": "extends: b.yaml\n", "b.yaml": "extends: [a.yaml]\n"})
    assert "b.yaml:1:11: `extends` makes a cycle:" in message
    assert "a.yaml -> " in message and message.count("a.yaml") >= 2


def test_extends_missing_file(tmp_path: Path) -> None:
    message = error_of(tmp_path, "extends:\n  - ../team/base.yaml\n")
    assert "Coopfile:2:5: `extends[0]` names" in message and "does not exist" in message


def test_mount_outside_home_needs_marking(tmp_path: Path) -> None:
    message = error_of(tmp_path, "mounts:\n  - /etc/ssl:/ssl:ro\n")
    assert "Coopfile:2:5: `mounts[0]` mounts /etc/ssl, which is outside your home" in message
    assert "`/etc/ssl:/ssl:ro,external`" in message
    config = load(tmp_path, "mounts:\n  - /etc/ssl:/ssl:ro,external\n")
    assert config.mounts[0].source == os.path.realpath("/etc/ssl")  # type: ignore[attr-defined]


def test_mount_through_a_symlink_cannot_escape(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "innocent").symlink_to("/etc")
    message = error_of(tmp_path, "mounts: ['~/innocent:/x']\n")
    assert "~/innocent (which resolves to /etc), which is outside your home" in message


def test_bad_mount_syntax(tmp_path: Path) -> None:
    assert "a mount is `src:dst`" in error_of(tmp_path, "mounts: [justonething]\n")
    assert "unknown option 'rx'" in error_of(tmp_path, "mounts: ['vol:/x:rx']\n")
    assert "is not absolute" in error_of(tmp_path, "mounts: ['vol:relative']\n")


def test_merge_order_and_rules(tmp_path: Path) -> None:
    coop_home = tmp_path / "coop"
    coop_home.mkdir()
    (coop_home / "config.yaml").write_text(
        "setup: [global-step]\nnetwork: {mode: none, allow: [g.example.com]}\n"
        "env: {A: global, B: global}\nregistries: {'127.0.0.1:5000': {insecure: true}}\n")
    config = load(tmp_path,
                  "image: debian:bookworm\nextends: [base.yaml]\nsetup: [own-step, base-step]\n"
                  "env: {B: own}\nagent: {command: claude --resume}\n",
                  **{"base.yaml": "setup: [base-step]\nnetwork: {allow: [b.example.com]}\n"
                                  "env: {A: base}\nagent: {args: [--fast]}\n"})
    assert config.setup == ["global-step", "base-step", "own-step"]  # type: ignore[attr-defined]
    assert config.network_mode == "none"  # type: ignore[attr-defined]
    assert config.network_allow == ["g.example.com", "b.example.com"]  # type: ignore[attr-defined]
    assert config.env == {"A": "base", "B": "own"}  # type: ignore[attr-defined]
    assert config.agent_command == ["claude", "--resume", "--fast"]  # type: ignore[attr-defined]
    assert config.registries == {"127.0.0.1:5000": {"insecure": True}}  # type: ignore[attr-defined]
    assert [p.name for p in config.sources] == ["config.yaml", "base.yaml", "Coopfile"]  # type: ignore[attr-defined]


def test_merge_does_not_modify_inputs() -> None:
    low = {"setup": ["a"], "env": {"X": "1"}}
    merged = merge(low, {"setup": ["b"], "env": {"Y": "2"}})
    assert merged == {"setup": ["a", "b"], "env": {"X": "1", "Y": "2"}}
    assert low == {"setup": ["a"], "env": {"X": "1"}}


def test_env_expansion() -> None:
    env, warnings = expand_env({"A": "${X}-$Y-$$Z-$MISSING"}, {"X": "1", "Y": "2"})
    assert env == {"A": "1-2-$Z-"}
    assert warnings == ["$MISSING is not set on the host; it expands to an empty string."]


def test_rust_coop_toml(tmp_path: Path) -> None:
    config = load(tmp_path, '[sandbox]\nimage = "debian:bookworm"\nagent = "claude --verbose"\n'
                            'setup = ["echo hi"]\n\n[network]\nmode = "none"\n',
                  name="coop.toml")
    assert config.agent_command == ["claude", "--verbose"]  # type: ignore[attr-defined]
    assert config.network_mode == "none"  # type: ignore[attr-defined]
    (tmp_path / "ws" / "coop.toml").write_text('[sandbox]\nimage = "host"\nagnet = "x"\n')
    with pytest.raises(ConfigError) as info:
        load_config(coop_paths({"COOP_HOME": str(tmp_path / "coop")}), tmp_path / "ws",
                    home=tmp_path / "home")
    assert "coop.toml:3:1: `agnet` is not a known key." in info.value.render()
    assert "Did you mean `agent`?" in info.value.render()


def test_broken_coopfile_gives_one_paragraph_and_exit_1(user: User) -> None:
    (user.workspace / "Coopfile").write_text("image: host\nmounts:\n  - /srv:/srv\n")
    user.chown(user.workspace)
    result = user.coop("run", "--", "true")
    assert result.returncode == 1
    message = result.stderr.decode()
    assert "Traceback" not in message
    assert message.startswith(f"coop: {user.workspace}/Coopfile:3:5: `mounts[0]` mounts /srv")
    assert len(message.strip().splitlines()) == 2  # the problem, then the fix


def test_missing_f_file(user: User) -> None:
    result = user.coop("run", "-f", "nope.yaml", "--", "true")
    assert result.returncode == 1
    assert b"nope.yaml: no such file." in result.stderr


BROKEN = {
    "unknown key": ("imgae: host\n", {}, "Coopfile:1:1: `imgae` is not a known key."),
    "wrong type": ("limits: {pids: many}\n", {},
                   "Coopfile:1:16: `limits.pids` must be a whole number, not a string."),
    "cycle": ("extends: [a.yaml]\n", {"a.yaml": "extends: [Coopfile]\n"},
              "a.yaml:1:11: `extends` makes a cycle:"),
    "missing extends": ("extends: [nowhere.yaml]\n", {},
                        "Coopfile:1:11: `extends[0]` names"),
    "bad mount": ("mounts: ['~/x']\n", {}, "Coopfile:1:10: `mounts[0]` is '~/x'; a mount is"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_coopfiles_through_the_cli(user: User, case: str) -> None:
    text, others, expected = BROKEN[case]
    (user.workspace / "Coopfile").write_text(text)
    for name, content in others.items():
        (user.workspace / name).write_text(content)
    user.chown(user.workspace)
    result = user.coop("run", "--", "touch", "/workspace/ran")
    message = result.stderr.decode()
    assert result.returncode == 1, message
    assert message.startswith("coop: ") and expected in message
    assert "Traceback" not in message and len(message.strip().splitlines()) <= 2
    assert not (user.workspace / "ran").exists()


UNREADABLE = {
    # Each: (file name, its bytes, the position and problem the message must start with).
    "syntax": ("Coopfile", b"agent:\n  command: [claude\nimage: host\n",
               "Coopfile:3:6: invalid YAML: did not find expected ',' or ']'."),
    "control character": ("Coopfile", b'image: host\nenv:\n  A: "\x01"\n',
                          "Coopfile:3:7: invalid YAML: the character U+0001 is not allowed."),
    "recursive alias": ("Coopfile", b"env: &x {A: *x}\n",
                        "Coopfile:1:6: invalid YAML: `env.A` is an alias of a value that "
                        "contains it."),
    "unknown tag": ("Coopfile", b"image: host\nshell: !!python/object:os.system x\n",
                    "Coopfile:2:8: invalid YAML: no value of type `!!python/object:os.system` is "
                    "allowed in a Coopfile."),
    "bad number": ("Coopfile", b"limits:\n  pids: !!int many\n",
                   "Coopfile:2:9: invalid YAML: `many` is not a valid `!!int`."),
    "bad date": ("Coopfile", b"limits:\n  pids: !!timestamp soon\n",
                 "Coopfile:2:9: invalid YAML: `soon` is not a valid `!!timestamp`."),
    "not utf-8": ("Coopfile", b"image: host\nenv:\n  A: caf\xe9\n",
                  "Coopfile:3:9: is not UTF-8 text (byte 0xe9)."),
    "toml syntax": ("coop.toml", b'[sandbox]\nimage = "host"\nagent = claude\n',
                    "coop.toml:3:9: invalid TOML: Invalid value."),
}


@pytest.mark.parametrize("case", sorted(UNREADABLE))
def test_unreadable_coopfile_names_file_line_and_column(user: User, case: str) -> None:
    """Whatever is wrong with the file's text, the message says where (SPEC §3), in one
    paragraph and never as an internal error."""
    name, content, expected = UNREADABLE[case]
    (user.workspace / name).write_bytes(content)
    user.chown(user.workspace)
    result = user.coop("run", "--", "touch", "/workspace/ran")
    message = result.stderr.decode()
    assert result.returncode == 1, message
    assert message.startswith(f"coop: {user.workspace}/{expected}"), message
    assert "internal error" not in message and len(message.strip().splitlines()) <= 2
    assert not (user.workspace / "ran").exists()
