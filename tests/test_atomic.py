"""The one writer (memc_models.atomic): outputs appear whole or not at all, a failed replace leaves
the old file byte for byte, folders are claimed, and what a stopped run was writing is removed."""

import os

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


def test_claim_folder_refuses_a_second_claim_until_released(tmp_path):
    with claim_folder(tmp_path / "run", "a training run into it"):
        with pytest.raises(UserError, match="another run is writing a training run into it"):
            with claim_folder(tmp_path / "run", "a training run into it"):
                pass
    with claim_folder(tmp_path / "run"):
        pass
    assert not (tmp_path / "run.lock").exists()


def test_discard_pending_removes_what_is_still_being_written(tmp_path):
    (tmp_path / "out.bin").write_bytes(b"old")
    output = AtomicFile(tmp_path / "out.bin")
    output.write(b"new")
    folder = AtomicFolder(tmp_path / "frames")
    discard_pending()
    assert listing(tmp_path) == ["out.bin"] and (tmp_path / "out.bin").read_bytes() == b"old"
    assert output.done and folder.done
