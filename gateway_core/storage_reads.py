"""How many bytes this process has had read from storage, as opposed to the OS page cache.

The recovery scan reads side by side on several connections only when its pages come from
the disk (which serves several random reads at once); when they are in the page cache, the
threads would only contend for the interpreter. This counter tells the two apart: a read
that the page cache served adds nothing to it.
"""

from __future__ import annotations

from pathlib import Path

_IO = Path("/proc/self/io")  # Linux; the counter covers every thread of the process


def storage_read_bytes() -> int | None:
    """The process's bytes read from storage so far; None where the OS does not say."""
    try:
        text = _IO.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("read_bytes:"):
            return int(line.split()[1])
    return None
