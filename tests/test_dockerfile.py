"""The Dockerfile, checked without a Docker engine: it lints clean, installs what the Makefile installs, and
carries every package the components import."""

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _run_steps(text: str) -> str:
    return " ".join(line.strip() for line in text.splitlines())


def test_hadolint_finds_nothing():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_installs_like_the_makefile():
    makefile = (ROOT / "Makefile").read_text()
    x86_torch = re.search(r"torch==[\d.]+ torchvision==[\d.]+\)$", makefile, re.M).group(0).rstrip(")")
    assert f'ARG TORCH="{x86_torch}"' in DOCKERFILE  # the same torch build
    assert "pip install --quiet -c requirements.lock -e '.[dev]'" in makefile
    assert "pip install --quiet -c requirements.lock ." in _run_steps(DOCKERFILE)  # the same locked versions
    assert "pip check" in DOCKERFILE and "pip check" in makefile
    assert "COPY pyproject.toml README.md requirements.lock ./" in DOCKERFILE


def test_every_shipped_package_is_copied_and_kfp_is_locked():
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    for pattern in packages["include"]:
        name = pattern.rstrip("*")
        assert f"COPY {name} ./{name}" in DOCKERFILE, name
    lock = (ROOT / "requirements.lock").read_text()
    assert re.search(r"^kfp==2\.17\.\d+$", lock, re.M)  # components run with install_kfp_package=False


def test_the_image_runs_as_a_non_root_user():
    assert re.search(r"^USER 1000$", DOCKERFILE, re.M)
    assert "useradd --create-home --uid 1000" in DOCKERFILE
