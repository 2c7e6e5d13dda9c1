"""What every program shares (memc_models.cli.common.run): each way a run ends is an exit status
and at most one line, and what a stopped run was writing is gone."""

import errno
import os
import re
import signal
import subprocess
import sys
import threading

import pytest

from helpers import STOP_SIGNALS_AS_FROM_A_TERMINAL
from memc_models.cli.common import check_new_folder, new_folder_output, run
from memc_models.errors import UserError


def test_a_user_error_is_one_line_and_status_1(capsys):
    def main(argv):
        raise UserError("frame.png: no such file")

    assert run(main, "memc-x", []) == 1
    assert capsys.readouterr().err == "memc-x: error: frame.png: no such file\n"


def test_an_os_error_is_one_line_naming_the_file(capsys):
    def main(argv):
        raise OSError(errno.EIO, os.strerror(errno.EIO), "/data/frame.png")

    assert run(main, "memc-x", []) == 1
    assert capsys.readouterr().err == f"memc-x: error: /data/frame.png: {os.strerror(errno.EIO)}\n"


def test_a_bug_is_one_line_with_status_2_and_the_traceback_on_request(capsys, monkeypatch):
    def main(argv):
        raise ZeroDivisionError("division by zero")

    monkeypatch.delenv("MEMC_TRACEBACK", raising=False)
    assert run(main, "memc-x", []) == 2
    err = capsys.readouterr().err
    assert err.startswith("memc-x: internal error: ZeroDivisionError: division by zero") and err.count("\n") == 1
    monkeypatch.setenv("MEMC_TRACEBACK", "1")
    assert run(main, "memc-x", []) == 2
    assert "Traceback" in capsys.readouterr().err


def test_warnings_are_one_line_each(capsys):
    import warnings

    def main(argv):
        warnings.warn("clip.mp4: the decoder reports damage at about frame 3\nmore detail")
        return 0

    assert run(main, "memc-x", []) == 0
    assert capsys.readouterr().err == "memc-x: warning: clip.mp4: the decoder reports damage at about frame 3\n"


WRITER = """
import sys, time
from memc_models.atomic import AtomicFile
from memc_models.cli.common import check_new_folder, new_folder_output, run

def main(argv):
    with AtomicFile(argv[0]) as output:
        output.write(b"half of the new output")
        print("writing", flush=True)
        for _ in range(1200):  # 60 s in short sleeps, as work between bytecodes (see SLOW_PROGRAM)
            time.sleep(0.05)
    return 0

sys.exit(run(main, "memc-x", sys.argv[1:]))
"""


#: Runs the program given after it (``-c CODE ARGS...``) with the stop signals blocked: a blocked
#: mask is inherited across exec.
BLOCKED_LAUNCHER = """
import os, signal, sys
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
"""


def _start_writer(target, started_blocked=False, prologue=""):
    launcher = [sys.executable, "-c", BLOCKED_LAUNCHER] if started_blocked else [sys.executable]
    program = STOP_SIGNALS_AS_FROM_A_TERMINAL + prologue + WRITER
    return subprocess.Popen([*launcher, "-c", program, str(target)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _stop_writer(process, *signums) -> int:
    try:
        assert process.stdout.readline().strip() == "writing"
        for signum in signums:
            process.send_signal(signum)
        return process.wait(timeout=30)  # the writer would sleep 60 s
    finally:
        process.kill()
        process.wait()


@pytest.mark.parametrize("signum, words", [(signal.SIGTERM, "stopped by SIGTERM"), (signal.SIGHUP, "stopped by SIGHUP"),
                                           (signal.SIGINT, "interrupted")])
@pytest.mark.parametrize("started_blocked", [False, True], ids=["", "started-with-the-signals-blocked"])
def test_a_signal_removes_the_partial_output_and_leaves_the_old_one(tmp_path, signum, words, started_blocked):
    # A program started with the stop signals blocked unblocks them, else it would see a SIGTERM
    # only once its run had ended.
    target = tmp_path / "out.bin"
    target.write_bytes(b"the previous output")
    process = _start_writer(target, started_blocked)
    assert _stop_writer(process, signum) == 128 + signum
    assert process.stderr.read() == f"memc-x: {words}\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]
    assert target.read_bytes() == b"the previous output"


def test_a_program_started_under_nohup_outlives_the_hangup(tmp_path):
    # nohup starts a program with SIGHUP ignored, so that a long run outlives its terminal: the
    # programs keep it ignored (here a SIGTERM after the SIGHUP is what stops the run).
    nohup = "signal.signal(signal.SIGHUP, signal.SIG_IGN)\n"
    process = _start_writer(tmp_path / "out.bin", prologue=nohup)
    assert _stop_writer(process, signal.SIGHUP, signal.SIGTERM) == 128 + signal.SIGTERM
    assert process.stderr.read() == "memc-x: stopped by SIGTERM\n"
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def sigterm_caught():
    """SIGTERM handled by a handler that does nothing while the test runs (a mistake in a test of
    the mask would otherwise end pytest), the mask and handler restored afterwards."""
    handler = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    yield
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    signal.signal(signal.SIGTERM, handler)


def test_a_stop_signal_pending_when_the_run_starts_stops_it_and_stays_blocked_after(sigterm_caught, capsys):
    called = []
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])
    signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
    assert run(lambda argv: called.append(argv) or 0, "memc-x", []) == 128 + signal.SIGTERM
    assert called == [] and capsys.readouterr().err == "memc-x: stopped by SIGTERM\n"
    assert signal.SIGTERM in signal.pthread_sigmask(signal.SIG_BLOCK, []) and not signal.sigpending()


def test_a_run_leaves_the_rest_of_the_signal_mask_as_its_main_left_it(sigterm_caught):
    def main(argv):
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
        return 0

    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])
    assert run(main, "memc-x", []) == 0
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    assert signal.SIGUSR1 in mask and signal.SIGTERM in mask


FAULTS_PROGRAM = """
import resource, sys
import torch
from memc_models.cli.common import keep_freed_memory, run

def faults_of_the_last_frames():
    # Frames of the same large tensors (64 MiB, 48 MiB and their sum); the page faults of the last 3.
    faults = []
    for _ in range(10):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        a, b = torch.ones(2**24), torch.ones(3, 2**22)
        float((a.view(4, -1)[:3] + b)[0, 0])
        del a, b
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return sum(faults[-3:])

if sys.argv[1] in ("program", "called"):  # run() as the program started, or called with its own argv
    argv = None if sys.argv[1] == "program" else []
    sys.exit(run(lambda argv: print(faults_of_the_last_frames()) or 0, "prog", argv))
if sys.argv[1] == "supported":
    print(keep_freed_memory())
else:
    print(faults_of_the_last_frames())
"""


def test_the_programs_keep_freed_memory_for_the_next_large_tensors_and_a_caller_keeps_its_allocator():
    # A program's frames allocate the same large tensors again and again: with glibc, run() lets
    # them reuse what the last ones freed (after a few frames, once the heap holds room for them)
    # instead of faulting in fresh pages every time (the default). A setting of the whole process:
    # run() called with an argv (as by a test, in pytest's process) leaves the allocator as it was.
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def program(mode):
        result = subprocess.run([sys.executable, "-c", FAULTS_PROGRAM, mode], cwd=root, capture_output=True, text=True,
                                env=dict(os.environ, PYTHONPATH=root), timeout=120)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    if program("supported") != "True":
        pytest.skip("the C library has no mallopt (not glibc)")
    fresh, kept, called = int(program("plain")), int(program("program")), int(program("called"))
    assert kept * 4 < fresh
    assert called * 2 > fresh


def test_an_output_folder_that_is_a_link_is_refused_before_any_work(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    link = tmp_path / "out"
    os.symlink(tmp_path / "elsewhere", link)
    for option, check in (("-o", lambda path: new_folder_output(path, str(tmp_path / "frames"))),
                          ("--save", lambda path: check_new_folder("--save", path))):
        with pytest.raises(UserError) as caught:
            check(str(link))
        assert str(caught.value) == f"{option} {link} is a link; expected a new or empty folder"


def test_an_output_folder_that_is_a_file_has_one_message_for_every_option(tmp_path):
    """-o (a folder of frames) and --save refuse a file in the same words, checked in one place."""
    a_file = tmp_path / "out"
    a_file.write_bytes(b"not a folder")
    for option, check in (("-o", lambda path: new_folder_output(path, str(tmp_path / "frames"))),
                          ("--save", lambda path: check_new_folder("--save", path))):
        with pytest.raises(UserError) as caught:
            check(str(a_file))
        assert str(caught.value) == f"{option} {a_file} is a file; expected a new or empty folder"
    assert a_file.read_bytes() == b"not a folder"


@pytest.mark.parametrize("program", ["enhance", "evaluate", "interpolate", "train"])
def test_help_prose_is_wrapped_to_the_terminal_and_example_commands_are_kept_whole(program, capsys, monkeypatch):
    import importlib

    monkeypatch.setenv("COLUMNS", "80")
    with pytest.raises(SystemExit):
        importlib.import_module(f"memc_models.cli.{program}").main(["--help"])
    lines = capsys.readouterr().out.splitlines()
    for line in lines:
        assert len(line) <= 80 or line.startswith("  "), line  # longer: an example command, one a line
        assert not re.search(r"[a-z]-$", line), line  # no word broken at its hyphen
    assert lines[0].startswith("usage: memc-")
