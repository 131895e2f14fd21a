"""deploy/switchboard.service: the hardening a gateway needs, every line explained, and a unit
systemd accepts (`systemd-analyze verify`, where the tool exists)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "deploy" / "switchboard.service"
INSTALLED = "/opt/switchboard/.venv/bin/switchboard"


def directives(section: str) -> dict[str, str]:
    found: dict[str, str] = {}
    current = None
    for line in UNIT.read_text().splitlines():
        if line.startswith("["):
            current = line.strip("[]")
        elif current == section and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            found[key] = value
    return found


def test_the_hardening_is_there() -> None:
    service = directives("Service")
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["PrivateTmp"] == "yes"
    assert service["UMask"] == "0077"
    # ProtectSystem=strict leaves only the StateDirectory writable: the state must be there.
    assert service["StateDirectory"] == "switchboard"
    assert service["Environment"] == "SWITCHBOARD_GATEWAY_STATE_DIR=%S/switchboard"
    assert service["Type"] == "notify" and service["RestartForceExitStatus"] == "75"


def test_every_directive_is_explained_by_a_comment_above_its_group() -> None:
    lines = UNIT.read_text().splitlines()
    section = None
    for number, line in enumerate(lines):
        if line.startswith("["):
            section = line
            continue
        if section != "[Service]" or not line or line.startswith("#"):
            continue
        above = number - 1
        while above >= 0 and lines[above] and not lines[above].startswith(("#", "[")):
            above -= 1  # a directive of the same group
        assert lines[above].startswith("#"), f"line {number + 1} has no comment: {line}"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not found")
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    # verify checks that ExecStart's program exists: point it at this checkout's venv, as an
    # installation would at /opt/switchboard.
    program = Path(sys.executable).parent / "switchboard"
    assert program.exists(), f"{program}: install the package (pip install -e .) first"
    copy = tmp_path / "switchboard.service"
    copy.write_text(UNIT.read_text().replace(INSTALLED, str(program)))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    about_ours = [line for line in (done.stdout + done.stderr).splitlines() if str(copy) in line]
    assert done.returncode == 0 and about_ours == [], done.stdout + done.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not found")
def test_systemd_rates_the_sandbox_ok(tmp_path: Path) -> None:
    """`systemd-analyze security` scores exposure from 0 (locked down) to 10; "OK" is < 4.5.
    It only reads unit files offline from systemd 252 on."""
    copy = tmp_path / "switchboard.service"
    copy.write_text(UNIT.read_text())
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    found = re.search(r"Overall exposure level for \S+: ([\d.]+)", done.stdout)
    if done.returncode != 0 and found is None:
        pytest.skip(f"this systemd-analyze cannot rate a unit file offline: {done.stderr[:200]}")
    assert found is not None, done.stdout
    assert float(found.group(1)) < 4.5, done.stdout
