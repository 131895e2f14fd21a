"""The restart-loop guard: stop resuming when boots with recovery candidates come too fast.

A turn that restarts the gateway (or crashes it) would otherwise be resumed, restart it again,
and so on forever (the peer's #49201: a user had to /stop twelve times). Boots chain while each
is within `window` seconds of the one before; a chain of `boots` trips the guard. A chain, not a
fixed window, so a loop whose resumed turn takes a few minutes per round is still caught.

The same chain is asked per session (decision.py's `session_loop`), of the times its turns
were found dead with their gateway: at a boot, or when another node took the session over
from a node that died under it (store/turns.py `crash_chains`; a turn that ended any other
way breaks the chain). On several nodes a session can loop without any one node booting
twice: the node running its turn dies, a survivor resumes it and dies too, and so on.
"""

from __future__ import annotations

from collections.abc import Sequence


def loop_guard_tripped(boot_times: Sequence[float], window: float, boots: int) -> bool:
    """boot_times: start times of boots that found candidates, the current boot last (or the
    times a session's turns were found dead, the newest last)."""
    if not boot_times or boots <= 0:
        return False
    chain = 1
    newer = boot_times[-1]
    for older in reversed(boot_times[:-1]):
        # abs(): a wall clock stepped back makes an older boot look newer; still one chain.
        if abs(newer - older) > window:
            break
        chain += 1
        newer = older
    return chain >= boots
