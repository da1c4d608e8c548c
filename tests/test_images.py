"""OCI images against a real registry on loopback, with images the tests push themselves."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.helpers import COOP, User
from tests.oci import Front, Registry, busybox_layer, layer, push_image, push_index


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    reg = Registry(tmp_path_factory.mktemp("registry"))
    base = layer(busybox_layer())
    etc = layer({"etc/a": b"from layer 2\n", "etc/b": b"kept\n", "data": None,
                 "data/old": None, "data/old/x": b"hidden by opaque\n"})
    whiteouts = layer({"etc/.wh.a": b"", "data/old/.wh..wh..opq": b"",
                       "data/old/y": b"new in layer 3\n"}, compress="zstd")
    amd = push_image(reg.host, "test/busybox", "1", [base, etc, whiteouts])
    arm = push_image(reg.host, "test/busybox", "arm", [base], architecture="arm64")
    push_index(reg.host, "test/busybox", "multi",
               [(amd.manifest_digest, "amd64", 500), (arm.manifest_digest, "arm64", 500)])
    push_index(reg.host, "test/busybox", "armonly", [(arm.manifest_digest, "arm64", 500)])
    push_image(reg.host, "test/other", "1", [base, layer({"etc/other": b"other image\n"})])
    push_image(reg.host, "test/third", "1", [base, layer({"etc/third": b"third\n"})])
    push_image(reg.host, "test/slow", "1", [base, layer({"etc/slow": os.urandom(1 << 20)})])
    yield reg
    reg.stop()


def use_registry(user: User, host: str, image: str) -> None:
    user.coop_home.mkdir(exist_ok=True)
    (user.coop_home / "config.yaml").write_text(f"registries:\n  '{host}': {{insecure: true}}\n")
    (user.workspace / "Coopfile").write_text(f"image: {host}/{image}\n")
    user.chown(user.coop_home)
    user.chown(user.workspace)


def test_pull_unpack_and_run_with_whiteouts(user: User, registry: Registry) -> None:
    use_registry(user, registry.host, "test/busybox:1")
    result = user.coop("run", "--", "sh", "-c",
                       "cat /etc/b; test -e /etc/a || echo a-is-gone; ls /data/old; id -u")
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().split("\n")[:4] == ["kept", "a-is-gone", "y",
                                                      str(user.uid)]
    images = user.coop_home / "data" / "images"
    assert len([p for p in images.iterdir() if p.is_dir()]) == 1
    # The image's Env applies, under the Coopfile's env (as with `docker run -e`).
    with (user.workspace / "Coopfile").open("a") as coopfile:
        coopfile.write("env: {SHADOWED: by the Coopfile}\n")
    result = user.coop("run", "--", "sh", "-c", 'echo "$PATH|$IMAGE_NAME|$SHADOWED"')
    assert result.stdout.decode().strip() == "/bin|busybox-test|by the Coopfile", result.stderr


def test_index_picks_this_machines_platform(user: User, registry: Registry) -> None:
    use_registry(user, registry.host, "test/busybox:multi")
    result = user.coop("run", "--", "cat", "/etc/b")
    assert (result.returncode, result.stdout) == (0, b"kept\n"), result.stderr


@pytest.mark.parametrize("image, message", [
    ("test/busybox:armonly", "has no linux/amd64 variant (it has: linux/arm64)."),
    ("test/busybox:nope", "the registry has no tag nope."),
])
def test_missing_platform_and_tag_exit_5(user: User, registry: Registry, image: str,
                                         message: str) -> None:
    if os.uname().machine != "x86_64":
        pytest.skip("the test images are amd64")
    use_registry(user, registry.host, image)
    result = user.coop("run", "--", "true")
    assert result.returncode == 5
    assert message in result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()


def test_unreachable_registry_exits_5(user: User) -> None:
    use_registry(user, "127.0.0.1:9", "test/busybox:1")
    result = user.coop("run", "--", "true")
    assert result.returncode == 5
    assert result.stderr.decode().startswith("coop: cannot reach the registry 127.0.0.1:9")


@pytest.fixture
def front(registry: Registry) -> Iterator[Front]:
    proxy = Front(registry.host)
    yield proxy
    proxy.stop()


def test_token_flow_and_shared_blob_cache(user: User, front: Front) -> None:
    from tests.oci import digest_of

    use_registry(user, front.host, "test/busybox:1")
    assert user.coop("run", "--", "true").returncode == 0
    assert front.token_requests >= 1  # anonymous bearer token, as Docker Hub does it
    base = digest_of(layer(busybox_layer()))
    assert front.blob_gets.count(base) == 1
    use_registry(user, front.host, "test/other:1")
    result = user.coop("run", "--", "cat", "/etc/other")
    assert result.stdout == b"other image\n", result.stderr
    assert front.blob_gets.count(base) == 1  # the shared layer came from the cache


def test_private_images_with_docker_login_or_the_global_config(user: User,
                                                                front: Front) -> None:
    import base64

    front.login = "alice:s3cret"
    use_registry(user, front.host, "test/busybox:1")
    refused = user.coop("run", "--", "true")
    assert refused.returncode == 5
    assert b"refused an anonymous token (401)" in refused.stderr
    assert f"docker login {front.host}".encode() in refused.stderr  # the fix
    # What `docker login` leaves behind is enough.
    docker = user.home / ".docker"
    docker.mkdir()
    auth = base64.b64encode(b"alice:s3cret").decode()
    (docker / "config.json").write_text(json.dumps({"auths": {front.host: {"auth": auth}}}))
    user.chown(docker)
    assert user.coop("run", "--", "true").returncode == 0
    # Or the global config, with the password kept in the environment.
    (docker / "config.json").unlink()
    (user.coop_home / "config.yaml").write_text(
        f"registries:\n  '{front.host}': {{insecure: true, username: alice, "
        "password_env: REGISTRY_PASSWORD}\n")
    shutil.rmtree(user.coop_home / "data" / "images")
    wrong = user.coop("run", "--", "true", env=user.env(REGISTRY_PASSWORD="guess"))
    assert wrong.returncode == 5 and b"refused the credentials of alice" in wrong.stderr
    right = user.coop("run", "--", "true", env=user.env(REGISTRY_PASSWORD="s3cret"))
    assert right.returncode == 0, right.stderr
    assert b"s3cret" not in (user.coop_home / "config.yaml").read_bytes()


def test_a_layer_unlike_its_config_is_refused(user: User, registry: Registry) -> None:
    from tests.oci import diff_id

    base, other = layer(busybox_layer()), layer({"etc": None, "etc/x": b"x"})
    push_image(registry.host, "test/inconsistent", "1", [base, other],
               diff_ids=[diff_id(base), diff_id(layer({"etc": None, "etc/x": b"y"}))])
    use_registry(user, registry.host, "test/inconsistent:1")
    result = user.coop("run", "--", "true")
    assert result.returncode == 5
    assert b"layer 2 of" in result.stderr and b"is not the one its image config names" \
        in result.stderr
    images = user.coop_home / "data" / "images"
    assert not [p for p in images.iterdir() if not p.name.startswith(".")]  # nothing kept


def test_corrupted_blob_is_rejected_and_not_cached(user: User, front: Front,
                                                   registry: Registry) -> None:
    from tests.oci import digest_of

    third = layer({"etc/third": b"third\n"})
    front.corrupt.add(digest_of(third))
    use_registry(user, front.host, "test/third:1")
    result = user.coop("run", "--", "cat", "/etc/third")
    assert result.returncode == 5
    assert "does not match its digest" in result.stderr.decode()
    blobs = user.coop_home / "data" / "blobs" / "sha256"
    assert not (blobs / digest_of(third).removeprefix("sha256:")).exists()
    images = user.coop_home / "data" / "images"
    assert not [p for p in images.glob("*") if p.is_dir()]
    front.corrupt.clear()
    fixed = user.coop("run", "--", "cat", "/etc/third")
    assert fixed.stdout == b"third\n", fixed.stderr


def test_killed_pull_leaves_nothing_a_later_run_uses(user: User, front: Front) -> None:
    front.delay = 60.0  # the pull stalls mid-blob far longer than the test takes to kill it
    use_registry(user, front.host, "test/slow:1")
    proc = user.popen(COOP + ["run", "--", "true"], stderr=subprocess.PIPE)
    blobs = user.coop_home / "data" / "blobs" / "sha256"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(blobs.glob("*.part")):
        time.sleep(0.05)
    assert list(blobs.glob("*.part")), "the download never started"
    proc.kill()
    proc.wait()
    images = user.coop_home / "data" / "images"
    assert not [p for p in images.glob("*") if p.is_dir() and not p.name.startswith(".tmp")]
    front.delay = 0
    result = user.coop("run", "--", "sh", "-c", "test -s /etc/slow && echo complete")
    assert result.stdout == b"complete\n", result.stderr
    assert not list(blobs.glob("*.part"))


def test_build_then_disk_commands(user: User, registry: Registry) -> None:
    use_registry(user, registry.host, "test/busybox:1")
    built = user.coop("build")
    assert built.returncode == 0, built.stderr
    assert built.stdout.decode().startswith(f"base ready: {registry.host}/test/busybox:1")
    listing = user.coop("image", "ls").stdout.decode().splitlines()
    assert listing[0].split() == ["IMAGE", "DIGEST", "SIZE", "PULLED"]
    assert listing[1].startswith(f"{registry.host}/test/busybox:1")
    df = user.coop("system", "df").stdout.decode()
    assert "image" in df and "layer cache" in df and df.splitlines()[-1].startswith("total")
    removed = user.coop("image", "rm", f"{registry.host}/test/busybox:1")
    assert removed.returncode == 0, removed.stderr
    assert "No images" in user.coop("image", "ls").stdout.decode()
    pruned = user.coop("image", "prune")
    assert pruned.stdout.startswith(b"freed ") and pruned.stdout != b"freed 0 B\n"
    assert not list((user.coop_home / "data" / "blobs" / "sha256").iterdir())
    missing = user.coop("image", "rm", "nothing:here")
    assert missing.returncode == 5 and b"no pulled image nothing:here" in missing.stderr


def test_session_of_a_pulled_image(session_user: User, registry: Registry) -> None:
    use_registry(session_user, registry.host, "test/busybox:1")
    result = session_user.coop("-d", "--", "sh", "-c", "cat /data/old/y; exec sleep 1000")
    assert result.returncode == 0, result.stderr
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if b"new in layer 3" in session_user.coop("logs").stdout:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the session did not run in the image")


def test_docker_hub_short_names_go_to_a_configured_mirror(user: User, front: Front) -> None:
    user.coop_home.mkdir(exist_ok=True)
    (user.coop_home / "config.yaml").write_text(
        f"registries:\n  docker.io: {{mirror: 'http://{front.host}'}}\n")
    (user.workspace / "Coopfile").write_text("image: test/busybox:1\n")  # a Docker Hub name
    user.chown(user.coop_home)
    user.chown(user.workspace)
    result = user.coop("run", "--", "cat", "/etc/b")
    assert result.stdout == b"kept\n", result.stderr
    assert front.blob_gets  # it came through the mirror, not registry-1.docker.io


def test_package_managers_map_to_non_interactive_installs() -> None:
    from coop.config.coopfile import CoopConfig
    from coop.images.build import steps_for

    config = CoopConfig(packages={"apt": ["git", "ripgrep"],
                                  "npm": ["@anthropic-ai/claude-code"]},
                        setup=["git config --system init.defaultBranch main"])
    steps = steps_for(config)
    assert [s.label for s in steps] == ["apt: git ripgrep", "npm: @anthropic-ai/claude-code",
                                        "setup: git config --system init.defaultBranch main"]
    assert "DEBIAN_FRONTEND=noninteractive apt-get install -y" in steps[0].command
    assert steps[0].command.endswith("git ripgrep")
    assert steps[1].command == "npm install -g @anthropic-ai/claude-code"
