"""The one writer (memc_models.atomic): outputs appear whole or not at all, a failed replace leaves
the old file byte for byte, folders are claimed, and what a stopped run was writing is removed."""

import os
import re
import signal
import subprocess
import sys

import pytest

from helpers import full_disk
from memc_models.atomic import AtomicFile, AtomicFiles, AtomicFolder, claim_folder, copy_file, discard_pending, write_file
from memc_models.errors import UserError


def listing(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_a_file_appears_only_when_complete(tmp_path):
    target = tmp_path / "new" / "out.bin"
    with AtomicFile(target) as output:
        output.write(b"first half, ")
        assert not target.exists() and os.path.dirname(output.temporary) == str(target.parent)
        output.write(b"second half")
    assert target.read_bytes() == b"first half, second half"
    assert listing(tmp_path) == ["new", "new/out.bin"]


@pytest.mark.parametrize("after_bytes", [0, 5])
def test_a_full_disk_names_the_file_and_leaves_the_old_one_byte_for_byte(tmp_path, monkeypatch, after_bytes):
    target = tmp_path / "out.bin"
    target.write_bytes(b"the previous output")
    full_disk(monkeypatch, after_bytes=after_bytes)
    with pytest.raises(UserError) as error:
        write_file(target, b"a much longer new output")
    assert str(error.value) == f"{target}: cannot write it (No space left on device)"
    assert target.read_bytes() == b"the previous output"
    assert listing(tmp_path) == ["out.bin"]


def test_a_write_error_swallowed_by_a_library_still_fails_the_commit(tmp_path, monkeypatch):
    full_disk(monkeypatch)
    target = tmp_path / "out.bin"
    output = AtomicFile(target)
    with pytest.raises(UserError):
        output.write(b"data")
    with pytest.raises(UserError, match="No space left on device"):
        output.commit()  # as if the library had caught the error and carried on
    assert listing(tmp_path) == []


def test_any_exception_inside_discards_and_keeps_the_target(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        with AtomicFile(target) as output:
            output.write(b"new")
            raise KeyboardInterrupt
    assert target.read_bytes() == b"old" and listing(tmp_path) == ["out.bin"]


def test_folders_made_for_a_failed_file_are_removed(tmp_path, monkeypatch):
    full_disk(monkeypatch)
    with pytest.raises(UserError):
        write_file(tmp_path / "a" / "b" / "out.bin", b"data")
    assert listing(tmp_path) == []


@pytest.mark.parametrize("make", [
    lambda path: AtomicFile(path / "frame.png"),  # the parents made, then the file's folder fails
    lambda path: AtomicFolder(path),  # the lock's folders made, then its name is too long
    lambda path: claim_folder(path).__enter__(),
], ids=["file", "folder", "claim"])
def test_folders_made_before_a_name_too_long_are_removed(tmp_path, make):
    too_long = tmp_path / "runs" / "deeper" / ("x" * (os.pathconf(tmp_path, "PC_NAME_MAX") + 1))
    with pytest.raises(UserError, match="File name too long"):
        make(too_long)
    assert listing(tmp_path) == []


def test_a_replaced_file_keeps_its_permissions(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    os.chmod(target, 0o640)
    write_file(target, b"new")
    assert os.stat(target).st_mode & 0o777 == 0o640


def test_several_files_appear_together_or_none_does(tmp_path, monkeypatch):
    (tmp_path / "a.bin").write_bytes(b"old a")
    with AtomicFiles() as outputs:
        outputs.write(tmp_path / "a.bin", b"new a")
        outputs.write(tmp_path / "b.bin", b"new b")
        assert (tmp_path / "a.bin").read_bytes() == b"old a" and not (tmp_path / "b.bin").exists()
    assert [(tmp_path / n).read_bytes() for n in ("a.bin", "b.bin")] == [b"new a", b"new b"]
    full_disk(monkeypatch, lambda path: os.path.basename(path).startswith("c."))  # a.bin fits, c.bin does not
    with pytest.raises(UserError, match="c.bin: cannot write it"):
        with AtomicFiles() as outputs:
            outputs.write(tmp_path / "a.bin", b"newer")
            outputs.write(tmp_path / "c.bin", b"never")
    assert (tmp_path / "a.bin").read_bytes() == b"new a" and listing(tmp_path) == ["a.bin", "b.bin"]


def test_copy_file_is_atomic_and_names_a_missing_source(tmp_path):
    (tmp_path / "source.bin").write_bytes(b"x" * 3_000_000)
    copy_file(tmp_path / "source.bin", tmp_path / "copy.bin")
    assert (tmp_path / "copy.bin").read_bytes() == b"x" * 3_000_000
    with pytest.raises(UserError, match="nothing.bin: cannot read it"):
        copy_file(tmp_path / "nothing.bin", tmp_path / "copy.bin")


def test_a_folder_appears_whole_and_is_claimed_while_written(tmp_path):
    target = tmp_path / "out"
    with AtomicFolder(target) as folder:
        with open(folder.file_path("00000.png"), "wb") as handle:
            handle.write(b"frame")
        assert not target.exists() and (tmp_path / "out.lock").exists()
        with pytest.raises(UserError, match=f"{target}: another run is writing this folder"):
            AtomicFolder(target)  # a second claim (its own lock on the same file) is refused
    assert listing(tmp_path) == ["out", "out/00000.png"]


def test_a_failed_folder_leaves_nothing_and_can_be_written_again(tmp_path):
    target = tmp_path / "new" / "out"
    with pytest.raises(UserError):
        with AtomicFolder(target) as folder:
            open(folder.file_path("00000.png"), "wb").close()
            raise UserError("stopped")
    assert listing(tmp_path) == []
    target.parent.mkdir()
    target.mkdir()  # an empty folder is a fine target
    with AtomicFolder(target) as folder:
        open(folder.file_path("00000.png"), "wb").close()
    assert listing(target) == ["00000.png"]
    with pytest.raises(UserError, match="already holds files"):
        AtomicFolder(target)


def another_process_writes_into(target, monkeypatch):
    """os.rename as if another process wrote a file into ``target`` just before the first move there
    (after every check)."""
    real_rename = os.rename

    def rename(source, destination):
        if os.fspath(destination) == os.fspath(target) and not (target / "theirs.txt").exists():
            target.mkdir(exist_ok=True)
            (target / "theirs.txt").write_text("another process's")
        return real_rename(source, destination)

    monkeypatch.setattr(os, "rename", rename)


@pytest.mark.parametrize("target_before", ["missing", "an empty folder"])
def test_a_folder_whose_target_is_taken_at_the_move_is_kept_beside_it(tmp_path, monkeypatch, target_before):
    target = tmp_path / "saved"
    if target_before == "an empty folder":
        target.mkdir()
    folder = AtomicFolder(target)
    (tmp_path / "saved-2").mkdir()
    (tmp_path / "saved-2" / "keep.txt").write_text("taken too")
    with open(folder.file_path("00000.png"), "wb") as handle:
        handle.write(b"frame")
    another_process_writes_into(target, monkeypatch)
    assert folder.commit_or_keep_beside() == f"{target}-3"
    assert listing(tmp_path) == ["saved", "saved-2", "saved-2/keep.txt", "saved-3", "saved-3/00000.png",
                                 "saved/theirs.txt"]


def test_a_folder_whose_empty_target_cannot_be_replaced_is_kept_beside_it(tmp_path, monkeypatch):
    target = tmp_path / "saved"
    target.mkdir()  # e.g. a mount point, or a folder in a parent this user may not change
    folder = AtomicFolder(target)
    open(folder.file_path("00000.png"), "wb").close()
    real_rmdir = os.rmdir

    def rmdir(path, *args, **kwargs):
        if os.fspath(path) == os.fspath(target):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_rmdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "rmdir", rmdir)
    assert folder.commit_or_keep_beside() == f"{target}-2"
    assert listing(tmp_path) == ["saved", "saved-2", "saved-2/00000.png"]


def test_a_link_is_not_a_folder_to_commit_into(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "out")
    with pytest.raises(UserError, match=f"{tmp_path / 'out'} is a link; expected a new or empty folder"):
        AtomicFolder(tmp_path / "out")


def test_a_folder_whose_target_is_taken_at_the_move_is_not_committed_and_theirs_is_kept(tmp_path, monkeypatch):
    target = tmp_path / "out"
    another_process_writes_into(target, monkeypatch)
    with pytest.raises(UserError, match=f"{target} already holds files"):
        with AtomicFolder(target) as folder:
            open(folder.file_path("00000.png"), "wb").close()
    assert listing(tmp_path) == ["out", "out/theirs.txt"]


def test_a_claim_whose_folder_another_claim_removes_meanwhile_makes_it_again(tmp_path, monkeypatch):
    # Another run's claim released between our making the folder and creating the lock in it:
    # its release removed the folder, empty then.
    parent = tmp_path / "runs"
    real_open = os.open

    def open_after_another_release(path, *args, **kwargs):
        if os.fspath(path).endswith("run.lock") and parent.exists() and not any(parent.iterdir()):
            parent.rmdir()
            monkeypatch.setattr(os, "open", real_open)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_after_another_release)
    with claim_folder(parent / "run"):
        assert (parent / "run.lock").exists()
    assert listing(tmp_path) == []


def test_claim_folder_refuses_a_second_claim_until_released(tmp_path):
    with claim_folder(tmp_path / "run", "a training run into it"):
        with pytest.raises(UserError, match="another run is writing a training run into it"):
            with claim_folder(tmp_path / "run", "a training run into it"):
                pass
    with claim_folder(tmp_path / "run"):
        pass
    assert not (tmp_path / "run.lock").exists()


def test_a_claim_removes_the_folders_made_for_its_lock_where_nothing_else_was_written(tmp_path):
    with claim_folder(tmp_path / "runs" / "new" / "run"):
        assert (tmp_path / "runs" / "new" / "run.lock").exists()
    assert listing(tmp_path) == []
    with claim_folder(tmp_path / "runs" / "new" / "run"):
        (tmp_path / "runs" / "new" / "run").mkdir()  # the run's folder, written while claimed
    assert listing(tmp_path) == ["runs", "runs/new", "runs/new/run"]


def test_discard_pending_removes_what_is_still_being_written(tmp_path):
    (tmp_path / "out.bin").write_bytes(b"old")
    output = AtomicFile(tmp_path / "out.bin")
    output.write(b"new")
    folder = AtomicFolder(tmp_path / "frames")
    discard_pending()
    assert listing(tmp_path) == ["out.bin"] and (tmp_path / "out.bin").read_bytes() == b"old"
    assert output.done and folder.done


# --- What a killed writer left (NAME.partial-PID-WHERE-RANDOM.EXT) ------------------------------

#: A writer in a fresh process: starts the output ``kind`` ("file" or "folder") at ``target``,
#: prints its temporary's path, then kills itself with SIGKILL ("die") or waits for a line on stdin
#: and commits ("live").
WRITER = """
import os, signal, sys
from memc_models.atomic import AtomicFile, AtomicFolder
kind, target, then = sys.argv[1:]
if kind == "file":
    output = AtomicFile(target)
    output.write(b"the live writer's")
else:
    output = AtomicFolder(target)
    open(output.file_path("00000.png"), "wb").close()
print(output.temporary, flush=True)
if then == "die":
    os.kill(os.getpid(), signal.SIGKILL)
sys.stdin.readline()
output.commit()
"""


def _start_writer(kind, target, then):
    process = subprocess.Popen([sys.executable, "-c", WRITER, kind, str(target), then], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    temporary = process.stdout.readline().strip()
    assert temporary, process.communicate()
    return process, temporary


def _killed_writer(kind, target):
    """What a writer killed with SIGKILL while writing ``target`` left: its temporary's path."""
    process, temporary = _start_writer(kind, target, "die")
    assert process.wait(timeout=60) == -signal.SIGKILL and os.path.exists(temporary)
    return temporary


def _dead_pid():
    """The id of a process that has ended (and was reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_temporary_is_named_after_its_target_and_says_which_process_writes_it(tmp_path):
    output = AtomicFile(tmp_path / "out.bin")
    name = os.path.basename(output.temporary)
    output.discard()
    assert re.fullmatch(rf"out\.partial-{os.getpid()}-[0-9a-f]{{12}}-[0-9a-f]{{8}}\.bin", name), name


def test_the_next_writer_of_an_output_removes_what_a_killed_writer_left_of_it(tmp_path):
    leftover = _killed_writer("file", tmp_path / "out.bin")
    other = _killed_writer("file", tmp_path / "other.bin")  # another output's: left for its own next writer
    write_file(tmp_path / "out.bin", b"whole")
    assert not os.path.exists(leftover) and os.path.exists(other)
    assert listing(tmp_path) == sorted(["out.bin", os.path.basename(other)])
    write_file(tmp_path / "other.bin", b"whole too")
    assert listing(tmp_path) == ["other.bin", "out.bin"]


def test_a_live_writers_temporary_is_kept(tmp_path):
    process, temporary = _start_writer("file", tmp_path / "out.bin", "live")
    try:
        write_file(tmp_path / "out.bin", b"ours")
        assert os.path.exists(temporary) and (tmp_path / "out.bin").read_bytes() == b"ours"
    finally:
        process.communicate("commit\n", timeout=60)
    assert process.returncode == 0 and (tmp_path / "out.bin").read_bytes() == b"the live writer's"
    assert listing(tmp_path) == ["out.bin"]


def test_leftovers_whose_writer_cannot_be_checked_from_here_are_kept(tmp_path):
    dead = _dead_pid()
    # Another boot (a power cut) or another machine or container: its process ids are not ours.
    elsewhere = tmp_path / f"out.partial-{dead}-000000000000-0123abcd.bin"
    unnamed = tmp_path / "out.partial-k2j4h5g6.bin"  # no PID and WHERE (older versions)
    for path in (elsewhere, unnamed):
        path.write_bytes(b"left")
    write_file(tmp_path / "out.bin", b"whole")
    assert listing(tmp_path) == sorted(["out.bin", elsewhere.name, unnamed.name])


def test_the_next_writer_of_a_folder_removes_a_killed_writers_temporary_of_it(tmp_path):
    leftover = _killed_writer("folder", tmp_path / "frames")
    # Another machine's writer may hold a lock this one cannot see (network filesystems): its
    # temporary is kept although the claim was taken here.
    elsewhere = tmp_path / f"frames.partial-{_dead_pid()}-000000000000-0123abcd"
    (elsewhere / "00000.png").parent.mkdir()
    (elsewhere / "00000.png").write_bytes(b"left")
    (tmp_path / "frames.partial-backup").mkdir()  # not a temporary's name: never touched
    with AtomicFolder(tmp_path / "frames") as folder:
        open(folder.file_path("00000.png"), "wb").close()
    assert not os.path.exists(leftover) and elsewhere.exists()
    assert listing(tmp_path) == sorted(["frames", "frames.partial-backup", elsewhere.name,
                                        f"{elsewhere.name}/00000.png", "frames/00000.png"])
