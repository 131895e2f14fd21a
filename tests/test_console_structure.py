"""The console's shape: one module per tab, app.py only composes and routes, styles live in
the stylesheet, and the palette does not import the app (read from the source, with ast)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CONSOLE = Path(__file__).resolve().parent.parent / "console"
TABS = ("overview", "sessions", "recovery", "processes", "timers", "audit", "nodes")


def tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def imported_modules(module: ast.Module) -> set[str]:
    """Every module imported anywhere in the file, TYPE_CHECKING blocks included."""
    found: set[str] = set()
    for node in ast.walk(module):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize("tab", TABS)
def test_each_tab_has_a_module_with_its_pane(tab: str) -> None:
    path = CONSOLE / "tabs" / f"{tab}.py"
    assert path.exists(), f"console/tabs/{tab}.py"
    classes = [node for node in tree(path).body if isinstance(node, ast.ClassDef)]
    assert any(c.name.endswith("Tab") for c in classes), [c.name for c in classes]


def test_the_app_module_only_composes_binds_and_routes() -> None:
    source = (CONSOLE / "app.py").read_text(encoding="utf-8")
    assert len(source.splitlines()) <= 300
    methods = {
        node.name
        for node in ast.walk(tree(CONSOLE / "app.py"))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    per_tab = {m for m in methods if any(t in m for t in (*TABS, "candidate", "transcript"))}
    assert per_tab <= {"action_show_tab"}, per_tab  # no tab is rendered or acted on here


def test_the_palette_does_not_import_the_app() -> None:
    assert "console.app" not in imported_modules(tree(CONSOLE / "commands.py"))


def style_literals(path: Path) -> list[str]:
    """Rich style strings written in Python: style="bold red" and the like."""
    found = []
    for node in ast.walk(tree(path)):
        if isinstance(node, ast.keyword) and node.arg == "style":
            value = node.value
            if isinstance(value, ast.Constant) and value.value:
                found.append(f"{path.name}:{value.lineno}: {value.value!r}")
        if isinstance(node, ast.Dict):
            for value in node.values:
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    words = set(value.value.split())
                    if words & {"bold", "dim", "red", "green", "yellow", "on"}:
                        found.append(f"{path.name}:{value.lineno}: {value.value!r}")
    return found


# Plain-terminal printers (Rich on stdout, no Textual app): nothing there reads a stylesheet.
PRINTERS = {"cli.py", "ops.py", "walkthrough.py", "demo.py", "serve.py"}


def test_styles_live_in_the_stylesheet_not_in_python() -> None:
    app_modules = [p for p in sorted(CONSOLE.rglob("*.py")) if p.name not in PRINTERS]
    found = [s for path in app_modules for s in style_literals(path)]
    assert found == []
