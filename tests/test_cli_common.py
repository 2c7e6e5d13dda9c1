"""What every program shares (memc_models.cli.common.run): each way a run ends is an exit status
and at most one line, and what a stopped run was writing is gone."""

import errno
import os
import signal
import subprocess
import sys

import pytest

from memc_models.cli.common import run
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
from memc_models.cli.common import run

def main(argv):
    with AtomicFile(argv[0]) as output:
        output.write(b"half of the new output")
        print("writing", flush=True)
        time.sleep(60)
    return 0

sys.exit(run(main, "memc-x", sys.argv[1:]))
"""


@pytest.mark.parametrize("signum, words", [(signal.SIGTERM, "stopped by SIGTERM"), (signal.SIGHUP, "stopped by SIGHUP"),
                                           (signal.SIGINT, "interrupted")])
def test_a_signal_removes_the_partial_output_and_leaves_the_old_one(tmp_path, signum, words):
    target = tmp_path / "out.bin"
    target.write_bytes(b"the previous output")
    process = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "writing"
    assert len(list(tmp_path.iterdir())) == 2  # the target and the partial one
    process.send_signal(signum)
    assert process.wait(timeout=60) == 128 + signum
    assert process.stderr.read() == f"memc-x: {words}\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]
    assert target.read_bytes() == b"the previous output"
