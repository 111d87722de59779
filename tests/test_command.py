"""How both command lines end: one line on stderr and one exit status per kind of failure."""

import os
import signal
import sys

import pytest

from pyramids.cli import main as pyramids_main
from pyramids.command import run_command
from pyramids.io import atomic_path


def _raise(exc: BaseException):
    def command():
        raise exc

    return command


@pytest.mark.parametrize(
    ("exc", "status", "message"),
    [
        (ValueError("image x.png is truncated"), 2, "prog: error: image x.png is truncated"),
        (FileNotFoundError(2, "No such file or directory", "a.png"), 2, "a.png: No such file"),
        (PermissionError(13, "Permission denied", "out/b.png"), 1, "out/b.png: Permission"),
        (FloatingPointError("loss diverged"), 1, "prog: error: loss diverged"),
        (MemoryError(), 1, "prog: error: out of memory"),
        (KeyboardInterrupt(), 130, "prog: interrupted"),
    ],
)
def test_each_kind_of_failure_has_its_exit_status_and_one_line(exc, status, message, capsys):
    assert run_command(_raise(exc), "prog") == status
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1


def test_a_bug_keeps_its_traceback():
    with pytest.raises(TypeError):
        run_command(_raise(TypeError("a bug")), "prog")


def test_success_is_zero_and_a_command_may_return_its_own_status():
    assert run_command(lambda: None, "prog") == 0
    assert run_command(lambda: 0, "prog") == 0
    assert run_command(lambda: 3, "prog") == 3


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM is a POSIX signal")
def test_sigterm_removes_temporary_files_and_exits_143(tmp_path, capsys):
    target = tmp_path / "out.png"
    seen = []

    def command():
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half an image")
            seen.append(tmp)
            os.kill(os.getpid(), signal.SIGTERM)  # handled before the next line runs
            raise AssertionError("SIGTERM did not interrupt the command")

    before = signal.getsignal(signal.SIGTERM)
    assert run_command(command, "prog", hint=lambda: "; resume with X") == 143
    assert "prog: terminated; resume with X" in capsys.readouterr().err
    assert seen and not seen[0].exists() and not target.exists()
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is put back


def test_pyramids_command_line_uses_the_convention(tmp_path, capsys):
    assert pyramids_main(["reconstruct", str(tmp_path / "missing"), "-o", "x.png"]) == 2
    assert capsys.readouterr().err.startswith("pyramids reconstruct: error:")
