"""Child processes in their own process group (``start_new_session=True``): signalling and stopping; free ports;
the signals that stop a launcher and its output once its terminal has gone.

Shared by the emulator launcher, the demo, the benchmarks and the tests, which all start
children this way so that one signal reaches a child and anything it spawned.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from typing import Any

# What ends a launcher (the demo, `fraudscore emulators`): Ctrl-C, a service manager's SIGTERM, and SIGHUP when its
# terminal goes away (a closed window, a dropped SSH session). Its children run in sessions of their own, so none
# of these reaches them: the launcher must stop them itself, whichever signal it was.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on now (for a child that cannot take port 0); racy by nature."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def signal_group(pgid: int, sig: signal.Signals) -> None:
    """``sig`` to a process group; a group that is gone already is fine."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_group(popen: subprocess.Popen[Any], sig: signal.Signals = signal.SIGTERM, grace: float = 20.0) -> bool:
    """``sig`` to the child's group, up to ``grace`` seconds to exit, then SIGKILL; reaps the child.

    A child that has exited already is left alone. Returns True when it had to be killed.
    """
    if popen.poll() is not None:
        return False
    signal_group(popen.pid, sig)  # the group id is the leader's pid (start_new_session)
    try:
        popen.wait(grace)
    except subprocess.TimeoutExpired:
        signal_group(popen.pid, signal.SIGKILL)
        popen.wait()
        return True
    return False


def on_stop_signals(handler: Callable[[], None]) -> dict[signal.Signals, Any]:
    """Calls ``handler`` (from the main thread) at any of :data:`STOP_SIGNALS`; returns the previous handlers.

    A SIGHUP ignored already stays ignored: started with ``nohup``, the launcher is meant to outlive its terminal.
    """
    wanted = [sig for sig in STOP_SIGNALS if not (sig == signal.SIGHUP and signal.getsignal(sig) == signal.SIG_IGN)]
    return {sig: signal.signal(sig, lambda *_: handler()) for sig in wanted}


def say(text: str = "", *, err: bool = False) -> None:
    """Prints a launcher's line, flushed; once its terminal has gone, its output goes to /dev/null instead.

    A hung-up terminal fails every write (EIO; a closed pipe: EPIPE): that must not stop a launcher halfway
    through stopping its children, nor turn its exit into a traceback.
    """
    try:
        print(text, file=sys.stderr if err else sys.stdout, flush=True)
    except OSError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        for fd in (1, 2):  # the buffered text that failed is flushed there too, at the next write or at exit
            os.dup2(devnull, fd)
        os.close(devnull)
