"""gateway_core must run headless: importing all of it loads no UI library."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_importing_every_core_module_loads_no_ui_code() -> None:
    script = textwrap.dedent(
        """
        import importlib, pkgutil, sys
        import gateway_core
        for info in pkgutil.walk_packages(gateway_core.__path__, "gateway_core."):
            importlib.import_module(info.name)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in {"textual", "rich", "console"})
        print(",".join(loaded))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def test_the_headless_command_loads_no_ui_library() -> None:
    """`switchboard run` never shows the console: Textual and Rich are not imported on its way
    to the first poll (their import delayed it; bench/restart.py)."""
    script = textwrap.dedent(
        """
        import sys
        import console.cli, console.serve
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in {"textual", "rich"})
        print(",".join(loaded))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""
