"""Screenshots of the operator console, from the real app over fixed data.

    python screenshots/make_screenshots.py              # every screen
    python screenshots/make_screenshots.py overview     # only the named screens

Renders each screen of `ConsoleApp` at 120x40 over the static backend of the snapshot tests
(tests/support/console_data.py: the same data, the same keys), writes screenshots/<name>.svg,
then screenshots/<name>.png with `rsvg-convert -w 1400` when that command exists (Debian:
librsvg2-bin). Without it, the SVGs are kept and the script says so. No clock, no gateway:
two runs give identical SVGs.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from console.app import ConsoleApp  # noqa: E402
from tests.support.console_data import (  # noqa: E402
    BY_SCREEN,
    SCREENS,
    SIZE,
    Screen,
    show,
    static_backend,
)

PNG_WIDTH = 1400


async def render(screen: Screen) -> str:
    """One screen of the real app, as an SVG."""
    app = ConsoleApp(
        static_backend(read_only=screen.read_only, drain=screen.drain), refresh_every=3600
    )
    async with app.run_test(size=SIZE) as pilot:
        await show(pilot, screen.keys)
        return app.export_screenshot(title=f"Switchboard: {screen.about}", simplify=True)


def to_png(svg: Path, converter: str) -> Path:
    """The SVG as a PNG. librsvg drops the non-breaking spaces Rich writes at the start of a
    text run (so indented lines lose their indent) unless the document preserves spaces: the
    converter is given a copy that says so; the SVG on disk stays as Textual wrote it."""
    png = svg.with_suffix(".png")
    document = svg.read_text(encoding="utf-8").replace("<svg ", '<svg xml:space="preserve" ', 1)
    subprocess.run(
        [converter, "-w", str(PNG_WIDTH), "-o", str(png)],
        input=document.encode(),
        check=True,
        timeout=120,
    )
    return png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "names", nargs="*", help=f"screens to render (default: all): {', '.join(BY_SCREEN)}"
    )
    parser.add_argument("--out", type=Path, default=HERE, help="directory (default: screenshots/)")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in BY_SCREEN]
    if unknown:
        parser.error(f"unknown screen(s): {', '.join(unknown)}; known: {', '.join(BY_SCREEN)}")
    chosen = [BY_SCREEN[name] for name in args.names] if args.names else list(SCREENS)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    converter = shutil.which("rsvg-convert")
    for screen in chosen:
        svg = out / f"{screen.name}.svg"
        svg.write_text(asyncio.run(render(screen)), encoding="utf-8")
        made = [svg]
        if converter is not None:
            made.append(to_png(svg, converter))
        print(
            "  ".join(
                str(path.relative_to(out.parent) if path.is_relative_to(out.parent) else path)
                for path in made
            )
        )
    if converter is None:
        print(
            "rsvg-convert not found: kept the SVGs only. For PNGs install librsvg2-bin "
            "(apt-get install librsvg2-bin) and run this again."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
