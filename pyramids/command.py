"""What the two command lines (``pyramids`` and ``convnet``) share: how a run ends.

Every failure a user can cause is one line on stderr, and the exit status says its kind:

====  ====================================================================================
0     success
2     a usage or input error: a wrong command line (argparse), a ``ValueError`` (every
      parser's error class derives from it: a missing, corrupt, too large or inconsistent
      input, an output that would replace an input) or a missing file
1     a runtime failure: any other ``OSError`` (an output that cannot be written, a
      download that failed from every mirror), a ``FloatingPointError`` (a computation
      that diverged), memory exhausted
130   interrupted (SIGINT, Ctrl-C)
143   terminated (SIGTERM)
====  ====================================================================================

SIGTERM is turned into an exception while the command runs, so that ``finally`` blocks
and :func:`pyramids.io.atomic_path` remove temporary files on the way out, as they do for
Ctrl-C. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable

__all__ = ["EXIT_INPUT", "EXIT_INTERRUPTED", "EXIT_RUNTIME", "EXIT_TERMINATED", "run_command"]

EXIT_RUNTIME = 1
EXIT_INPUT = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class _Terminated(BaseException):
    """SIGTERM, raised where the main thread is, so that cleanup runs."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Terminated


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (an ``OSError`` as ``file: reason``)."""
    if isinstance(exc, MemoryError):
        return "out of memory"
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return " ".join(str(exc).split()) or type(exc).__name__


def run_command(
    command: Callable[[], int | None], prog: str, *, hint: Callable[[], str] = str
) -> int:
    """Run ``command()`` and return its exit status (module docstring).

    Parameters
    ----------
    command : callable
        The work; returns None or 0 on success, or an exit status of its own.
    prog : str
        The prefix of every message, e.g. ``"pyramids blend"``.
    hint : callable, optional
        Called after an interruption; what it returns is appended to the message (e.g. how
        to resume).

    Returns
    -------
    int
        The exit status.
    """
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if in_main else None
    try:
        return command() or 0
    except KeyboardInterrupt:
        print(f"{prog}: interrupted{hint()}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except _Terminated:
        print(f"{prog}: terminated{hint()}", file=sys.stderr)
        return EXIT_TERMINATED
    except (ValueError, FileNotFoundError) as exc:
        print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_INPUT
    except (OSError, FloatingPointError, MemoryError) as exc:
        print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_RUNTIME
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
