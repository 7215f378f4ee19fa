"""`kedro viz build` rendered in a real headless Chromium: the grpo_debug graph with its node names."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

NODE_NAMES = ("prepare_prompts", "format_prompts", "train_grpo", "validate_checkpoint", "benchmark_run")
# Flags for a sandboxed, offline machine: no GPU, no background network traffic, a throwaway profile.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1600,1000",
    "--virtual-time-budget=15000",
)


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail(
            "Chromium is missing: `make test` installs Debian's chromium package, or run `apt-get install chromium`"
        )
    return path


@pytest.fixture
def served_viz_build(viz_build: Path) -> Iterator[str]:
    """The static kedro-viz site of a project copy, served on 127.0.0.1."""
    project = viz_build
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(project / "build")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as client:
                if client.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/?pid=grpo_debug&expandAllPipelines=true"
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.mark.slow
def test_kedro_viz_renders_the_grpo_debug_graph(served_viz_build: str, tmp_path: Path) -> None:
    browser = chromium()
    profile = tmp_path / "chromium-profile"
    screenshot = tmp_path / "kedro-viz-grpo_debug.png"
    subprocess.run(
        [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}-shot", f"--screenshot={screenshot}", served_viz_build],
        capture_output=True,
        timeout=120,
        check=True,
    )
    dom = subprocess.run(
        [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}-dom", "--dump-dom", served_viz_build],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 20_000
    missing = [name for name in NODE_NAMES if name not in dom]
    assert not missing, f"kedro-viz page lacks nodes {missing}; screenshot: {screenshot}"
    for layer in ("raw", "intermediate", "primary", "reporting"):
        assert f">{layer}<" in dom, layer
