"""The page a browser gets: textual-serve's terminal (its script and stylesheet), nothing
fetched from elsewhere (the stock page loads a web font from the internet), and a banner
when the console has ended that leaves its last screen readable."""

from __future__ import annotations

from html import escape

_PAGE = """\
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<link rel="stylesheet" href="{static}css/xterm.css">
<script src="{static}js/textual.js"></script>
<style>
  html, body {{ margin: 0; height: 100%; background: #0c181f; }}
  #terminal {{ position: absolute; inset: 0; }}
  #ended {{
    display: none; position: absolute; top: 0; left: 0; right: 0; z-index: 10;
    padding: 6px 12px; background: #5e0b0b; color: #fff; font: 14px monospace;
  }}
  body.-closed #ended {{ display: block; }}
  #ended a {{ color: #fff; }}
</style>
</head>
<body>
<div id="ended">This console has ended. <a href="/">Start a new one</a></div>
<div id="terminal" class="textual-terminal"
     data-session-websocket-url="{websocket}" data-font-size="{font_size}"></div>
</body>
</html>
"""


def page(*, title: str, websocket_url: str, font_size: int = 16) -> str:
    return _PAGE.format(
        title=escape(title),
        static="/static/",
        websocket=escape(websocket_url),
        font_size=font_size,
    )
