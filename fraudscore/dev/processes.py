"""Child processes in their own process group (``start_new_session=True``): signalling and stopping; free ports.

Shared by the emulator launcher, the demo, the benchmarks and the tests, which all start
children this way so that one signal reaches a child and anything it spawned.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from typing import Any


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
