"""The README's set-up on a machine as a new user has it: Python 3.11 and make, no uv.

`make install` runs in a copy of the repository's files with a PATH on which neither `uv` nor
`python3 -m uv` exists (a bare virtualenv first, every folder holding a `uv` left out), so it has
to fetch the pinned uv itself; and with no Python 3.11 at all it says so in one line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _copy_of_the_repository(target: Path) -> Path:
    """The files git tracks, as they are in the working tree: what a fresh clone would hold."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    for name in listed.decode().split("\0"):
        source = ROOT / name
        if name and source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def _path_without_uv(first: Path) -> str:
    folders = [str(first)]
    for folder in os.environ["PATH"].split(os.pathsep):
        if folder and not (Path(folder) / "uv").exists() and "shims" not in folder:
            folders.append(folder)
    return os.pathsep.join(folders)


@pytest.mark.timeout(300)
def test_make_install_fetches_the_pinned_uv_when_the_machine_has_none(tmp_path: Path) -> None:
    repo = _copy_of_the_repository(tmp_path / "repo")
    bare = tmp_path / "bare"
    venv.create(bare, with_pip=False)
    # The machine's own settings (certificates, package indexes) stay; only PATH changes.
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "UV")}
    env["PATH"] = _path_without_uv(bare / "bin")
    # The premise: no uv command and no uv module for python3.
    assert shutil.which("uv", path=env["PATH"]) is None
    probe = subprocess.run(["python3", "-m", "uv", "--version"], env=env, capture_output=True)
    assert probe.returncode != 0

    done = subprocess.run(
        ["make", "install"], cwd=repo, env=env, capture_output=True, text=True, timeout=280
    )

    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert (repo / ".uv-bootstrap" / "bin" / "uv").exists()
    help_text = subprocess.run(
        [str(repo / ".venv" / "bin" / "vkp"), "--help"], env=env, capture_output=True, text=True
    )
    assert help_text.returncode == 0, help_text.stderr
    assert "welfare-technology hub" in help_text.stdout


def test_make_install_without_python_3_11_says_what_to_install_in_one_line(
    tmp_path: Path,
) -> None:
    repo = _copy_of_the_repository(tmp_path / "repo")
    tools = tmp_path / "tools"
    tools.mkdir()
    make = shutil.which("make")
    assert make is not None
    (tools / "make").symlink_to(make)

    done = subprocess.run(
        ["make", "install"],
        cwd=repo,
        env={"PATH": str(tools), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode != 0
    ours = [line for line in done.stderr.splitlines() if not line.startswith("make:")]
    assert ours == [
        "make install needs Python 3.11 as python3.11 on PATH "
        "(Debian: apt-get install python3.11; or pyenv install 3.11)"
    ]
    assert not (repo / ".venv").exists()


def test_the_ci_script_leaves_uv_to_make_install() -> None:
    """One place holds uv's pin: the Makefile; `.ci/run` installs no uv of its own."""
    assert "uv==" not in (ROOT / ".ci" / "run").read_text()
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert (ROOT / "Makefile").read_text().count("UV_VERSION := ") == 1
