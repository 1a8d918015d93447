"""deploy/Dockerfile builds the binary that ships with `cargo auditable`, so the image carries its
dependency inventory; scripts/build-release does the same outside Docker with the same pin."""

from __future__ import annotations

import re

from cfn_template import DEPLOY, DOCKERFILE_PATH

BUILD_RELEASE = DEPLOY.parent / "scripts" / "build-release"


def instructions(text: str) -> list[str]:
    """Dockerfile instructions with continuation lines joined and comments dropped."""
    lines = [l for l in text.splitlines() if not l.lstrip().startswith("#")]
    return [" ".join(i.split()) for i in "\n".join(lines).replace("\\\n", " ").splitlines() if i.strip()]


def build_stage() -> list[str]:
    text = DOCKERFILE_PATH.read_text(encoding="utf-8")
    stage = text.split("\nFROM ")[1]  # the first FROM is the build stage
    return instructions("FROM " + stage)


def test_the_shipped_binary_is_built_with_cargo_auditable():
    runs = [i for i in build_stage() if i.startswith("RUN ")]
    (build,) = [r for r in runs if " build " in r]
    assert "cargo auditable build --release --locked --bin findings-bridge" in build
    assert "cargo build" not in build, "a plain cargo build would ship a binary without inventory"
    # The same RUN refuses a binary whose .dep-v0 section did not survive strip.
    assert build.index("strip ") < build.index("--dump-section .dep-v0=") < build.index("test -s")
    (install,) = [r for r in runs if "cargo install" in r]
    assert '--locked --version "${CARGO_AUDITABLE_VERSION}" cargo-auditable' in install
    assert runs.index(install) < runs.index(build)


def test_dockerfile_and_build_script_pin_the_same_cargo_auditable():
    dockerfile = re.search(r"^ARG CARGO_AUDITABLE_VERSION=(\S+)$", DOCKERFILE_PATH.read_text(encoding="utf-8"), re.M)
    script = re.search(r'^CARGO_AUDITABLE_VERSION="([^"]+)"', BUILD_RELEASE.read_text(encoding="utf-8"), re.M)
    assert dockerfile and script
    assert dockerfile.group(1) == script.group(1)
    assert re.fullmatch(r"\d+\.\d+\.\d+", script.group(1)), "an exact version, not a range"
    assert "cargo auditable build --release --locked" in BUILD_RELEASE.read_text(encoding="utf-8")
