"""State files are private: the state dir 0700 and every file in it 0600, whatever the umask.

They hold chat transcripts, job output and the control socket. Each file is created with its
final mode in the open() call itself (never chmod-ed after the fact, which would leave a window
in which it is readable), and the process umask is never changed: it is inherited by the
agents' tool processes, whose files are theirs to decide.

A state dir that already exists is left as it is, but one that grants group or other access
gets one warning (per process) naming the fix.
"""

from __future__ import annotations

import logging
import os
import shlex
import stat
from pathlib import Path

log = logging.getLogger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600
_warned: set[Path] = set()


def private_dir(path: Path) -> Path:
    """Create `path` 0700 if absent, and so every missing parent (as XDG asks of the base
    directories); an existing dir is left as it is."""
    try:
        path.mkdir(mode=DIR_MODE)
    except FileExistsError:
        return path
    except FileNotFoundError:
        private_dir(path.parent)
        try:
            path.mkdir(mode=DIR_MODE)
        except FileExistsError:
            return path
    # mkdir's mode is masked by the umask, which can only take bits away: make it exactly 0700
    # (a umask such as 0277 would otherwise leave a dir we cannot write).
    os.chmod(path, DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """Create `path` empty with mode 0600 if it does not exist; an existing file is untouched.

    Whoever then opens it (SQLite, a log handler, a shell redirection) keeps that mode."""
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    except FileExistsError:
        return path
    try:
        os.fchmod(fd, FILE_MODE)  # as above: exactly 0600 whatever the umask took away
    finally:
        os.close(fd)
    return path


def open_access(path: Path) -> int:
    """The group and other permission bits of `path` (0 when private, or absent)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return 0
    return stat.S_IMODE(mode) & 0o077


def warn_if_shared(state_dir: Path) -> bool:
    """One warning line (once per process and dir) if the state dir is open to others."""
    path = state_dir.expanduser().absolute()
    bits = open_access(path)
    if not bits or path in _warned:
        return False
    _warned.add(path)
    mode = stat.S_IMODE(path.stat().st_mode)
    log.warning(
        "state dir %s is accessible to group or others (mode %04o); it holds chat "
        "transcripts: run `chmod 700 %s`",
        path,
        mode,
        shlex.quote(str(path)),
        extra={"event": "state_dir_not_private"},
    )
    return True
