"""One writer for every output: files and folders appear whole, or not at all.

Every output is written under a temporary name beside its target (``NAME.partial-XXXX.EXT`` for
a file, ``NAME.partial-XXXX/`` for a folder), every step checked (each write, flush, fsync and
close; an encoder's exit status is checked by its caller before :meth:`AtomicFile.commit`), and
renamed onto the target only when all succeeded; the same idea as git's lock files and rsync's
temporary files. On failure the temporary is removed and an existing target is left exactly as it
was. A folder output is also *claimed* (a ``NAME.lock`` beside it, held with ``flock`` for the
whole run), so that a second run into the same folder is refused instead of mixing its files in.

Outputs not yet committed are tracked: :func:`discard_pending` removes them all (the programs
call it on the way out, also after SIGTERM or SIGHUP; the library registers it with ``atexit``).

Only a writer killed outright (SIGKILL, a power cut) leaves its temporary behind. On Linux the
temporary's name says who wrote it, ``NAME.partial-PID-WHERE-RANDOM.EXT``: the writer's process id
and WHERE, a hash of the kernel's boot (``boot_id``) and the writer's PID namespace, the two
things that make "is PID alive?" answerable from here. The next writer of the same output removes
the leftovers that provably belong to a dead writer, and nothing else:

- a file's, when WHERE is its own (this boot, this PID namespace) and no process PID exists;
- a folder's, likewise, and only while the new writer holds the folder's claim (which every writer
  of that folder holds while its temporary exists).

A live writer's temporary is never one of them (its PID exists). A folder's WHERE is checked too,
although the claim would do on a local disk: on a network or FUSE filesystem a lock may be visible
only on the machine that took it. Kept, to be deleted by hand: leftovers from before a reboot or
from another machine or container (WHERE differs: the PID cannot be checked from here), and names
without PID and WHERE (written where the boot or the namespace cannot be read, or by older
versions).

Errors while writing are :class:`~memc_models.errors.UserError`s naming the target file:
``out.png: cannot write it (No space left on device)``.
"""

import atexit
import contextlib
import errno
import fcntl
import functools
import hashlib
import os
import re
import secrets
import shutil
import threading
from typing import Callable, Dict, Iterator, List, NamedTuple, Optional, Tuple, TypeVar, Union

from .errors import UserError, os_reason

__all__ = ["AtomicFile", "AtomicFolder", "AtomicFiles", "check_unclaimed", "claim_folder", "copy_file",
           "discard_pending", "make_parent_folder", "remove_empty_folders", "Transaction", "write_chunk", "write_file"]

PathLike = Union[str, os.PathLike]
T = TypeVar("T")

_pending_lock = threading.Lock()
_pending: List[object] = []  # AtomicFile and AtomicFolder objects neither committed nor discarded


def _track(output) -> None:
    with _pending_lock:
        _pending.append(output)


def _untrack(output) -> None:
    with _pending_lock:
        if output in _pending:
            _pending.remove(output)


def discard_pending() -> None:
    """Discards every output still being written (newest first): what a run that is stopping
    leaves behind is removed, and the targets stay as they were."""
    while True:
        with _pending_lock:
            if not _pending:
                return
            output = _pending[-1]
        output.discard()  # removes it from _pending


atexit.register(discard_pending)


def write_chunk(fd: int, data: memoryview) -> int:
    """os.write, the one place bytes reach a file (tests inject a full disk here)."""
    return os.write(fd, data)


def make_parent_folder(path: PathLike) -> List[str]:
    """Makes the folder that ``path`` goes in (and its parents); returns the folders it made,
    outermost first (for removing them again when the write fails)."""
    folder = os.path.dirname(os.path.abspath(path))
    made = []
    missing = folder
    while not os.path.exists(missing):
        made.insert(0, missing)
        missing = os.path.dirname(missing)
    try:
        os.makedirs(folder, exist_ok=True)
        return made
    except (FileExistsError, NotADirectoryError):
        remove_empty_folders(made)
        raise UserError(f"{os.fspath(path)}: cannot create the folder {folder} (a file is in the way)") from None
    except OSError as error:
        remove_empty_folders(made)  # a part-way failure (a name too long, a full disk): the parents made go
        raise UserError(f"{os.fspath(path)}: cannot create the folder {folder} ({os_reason(error)})") from None


def remove_empty_folders(made: List[str]) -> None:
    """Removes ``made`` (folders, outermost first, as :func:`make_parent_folder` returns them),
    innermost first, while they are empty; those never made (a failure part way) are passed over."""
    for folder in reversed(made):
        try:
            os.rmdir(folder)
        except FileNotFoundError:
            continue
        except OSError as error:
            if error.errno == errno.ENAMETOOLONG:  # never made: its name was too long
                continue
            break


def _new_file_mode(target: str) -> int:
    """The permissions the finished file gets: the replaced file's, else those of any new file."""
    try:
        return os.stat(target).st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


# --- Temporary names, and what killed writers left ------------------------------------------------


@functools.lru_cache(maxsize=None)
def _where() -> Optional[str]:
    """WHERE of the temporaries' names: 12 hex digits of a hash of this kernel's boot id and this
    process's PID namespace (among which process ids are unique); None where either is unknown."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as handle:
            boot = handle.read().strip()
        namespace = os.stat("/proc/self/ns/pid")
    except OSError:
        return None
    if not boot:
        return None
    return hashlib.sha256(f"{boot} {namespace.st_dev} {namespace.st_ino}".encode()).hexdigest()[:12]


# NAME.partial-PID-WHERE-RANDOM.EXT, for the target NAME.EXT (a folder's: NAME.partial-PID-WHERE-RANDOM).
_PARTIAL = re.compile(r"(?P<stem>.+)\.partial-(?P<pid>[0-9]{1,10})-(?P<where>[0-9a-f]{12})-[0-9a-f]{8}"
                      r"(?P<ext>(\.[^.]*)?)")


def _new_temporary(folder: str, stem: str, extension: str, make: Callable[[str], T]) -> Tuple[str, T]:
    """(path, ``make(path)``) for a new temporary name beside the target ``stem + extension`` in
    ``folder`` (``make`` raises FileExistsError when the name is taken). The name carries the
    writer's PID and WHERE, or neither where WHERE is unknown or the name would be too long."""
    where = _where()
    while True:
        random = secrets.token_hex(4)
        owner = f"{os.getpid()}-{where}-" if where else ""
        path = os.path.join(folder, f"{stem}.partial-{owner}{random}{extension}")
        try:
            return path, make(path)
        except FileExistsError:
            continue
        except OSError as error:
            if error.errno != errno.ENAMETOOLONG or not where:
                raise
            where = None  # the short name: kept if its writer is killed, as before names said who


class _Leftover(NamedTuple):
    path: str
    pid: int
    where: str
    folder: bool


_scan_lock = threading.Lock()
_scans: Dict[str, Dict[str, List[_Leftover]]] = {}  # folder -> target name -> its temporaries


def _temporaries(folder: str, target: str) -> List[_Leftover]:
    """The temporaries (in the named format) beside ``target`` in ``folder``, as they were when
    this process first wrote into ``folder``: each folder is listed once, not once per file (a
    folder of frames, the --save images)."""
    folder = os.path.abspath(folder)
    with _scan_lock:
        if folder not in _scans:
            found: Dict[str, List[_Leftover]] = {}
            with contextlib.suppress(OSError), os.scandir(folder) as entries:
                for entry in entries:
                    match = _PARTIAL.fullmatch(entry.name)
                    if match is None or entry.is_symlink():
                        continue
                    found.setdefault(match["stem"] + match["ext"], []).append(
                        _Leftover(entry.path, int(match["pid"]), match["where"], entry.is_dir()))
            _scans[folder] = found
        return _scans[folder].pop(target, [])


def _alive(pid: int) -> bool:
    """Whether a process ``pid`` exists in this PID namespace (a zombie, or another user's, too)."""
    if pid <= 0 or pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # EPERM: it exists; anything else: assume it does
        return True
    return True


def _remove_leftovers(folder: str, target: str, claimed: bool = False) -> None:
    """Removes the temporaries of ``target`` in ``folder`` that a killed writer left: those whose
    WHERE is ours and whose PID is dead (a folder's only with ``claimed``: the caller holds the
    claim of the folder ``target``). Best effort: a failure leaves the leftover."""
    for leftover in _temporaries(folder, target):
        if leftover.where != _where() or _alive(leftover.pid):
            continue
        if leftover.folder and claimed:
            shutil.rmtree(leftover.path, ignore_errors=True)
        elif not leftover.folder:
            with contextlib.suppress(OSError):
                os.remove(leftover.path)


def _create_file(path: str) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)


class AtomicFile:
    """A file written under a temporary name beside ``path`` (same folder, same extension) and
    renamed onto ``path`` by :meth:`commit`.

    Write through :meth:`write` (or the file object :meth:`handle`, e.g. for ``torch.save``), or
    let another program write to :attr:`temporary` (an encoder) and check its exit status before
    committing. As a context manager it commits on success and discards on any exception.
    """

    def __init__(self, path: PathLike):
        self.path = os.fspath(path)
        if os.path.isdir(self.path):
            raise UserError(f"{self.path} is a folder; expected a file name")
        self._made_folders = make_parent_folder(self.path)
        folder, name = os.path.split(os.path.abspath(self.path))
        stem, extension = os.path.splitext(name)
        _remove_leftovers(folder, name)
        try:
            self.temporary, self._fd = _new_temporary(folder, stem, extension, _create_file)
        except OSError as error:
            self._remove_made_folders()
            raise UserError(f"{self.path}: cannot write it ({os_reason(error)})") from None
        self._mode = _new_file_mode(self.path)
        self._failure: Optional[str] = None
        self.done = False
        _track(self)

    def write(self, data) -> int:
        """Writes all of ``data`` (bytes-like); a failure is a UserError naming the target."""
        view = memoryview(data).cast("B")
        if self._fd is None:
            raise ValueError(f"{self.path}: write after the file was closed")
        try:
            written = 0
            while written < len(view):
                written += write_chunk(self._fd, view[written:])
        except OSError as error:
            self._failure = os_reason(error)
            raise UserError(f"{self.path}: cannot write it ({self._failure})") from None
        return len(view)

    def handle(self) -> "_Handle":
        """A binary file object writing into the temporary (for writers that want one)."""
        return _Handle(self)

    def _close_fd(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def commit(self) -> None:
        """Flushes the temporary to disk and renames it onto ``path``. On failure the temporary is
        removed (``path`` is untouched) and a UserError names ``path``."""
        if self.done:
            return
        try:
            if self._failure is not None:  # a write failed inside a caller that swallowed the error
                raise UserError(f"{self.path}: cannot write it ({self._failure})")
            if self._fd is not None:
                os.fsync(self._fd)
                self._close_fd()
            if not os.path.isfile(self.temporary):
                raise UserError(f"{self.path}: cannot write it (the temporary file {self.temporary} vanished)")
            os.chmod(self.temporary, self._mode)
            os.replace(self.temporary, self.path)
        except UserError:
            self.discard()
            raise
        except OSError as error:
            self.discard()
            raise UserError(f"{self.path}: cannot write it ({os_reason(error)})") from None
        self.done = True
        _untrack(self)

    def discard(self) -> None:
        """Removes the temporary; ``path`` is left as it was. Safe to call more than once."""
        if not self.done:
            with contextlib.suppress(OSError):
                self._close_fd()
            with contextlib.suppress(OSError):
                os.remove(self.temporary)
            self._remove_made_folders()
            self.done = True
        _untrack(self)

    def _remove_made_folders(self) -> None:
        """Removes the folders made for this file, innermost first, where nothing else went in."""
        remove_empty_folders(self._made_folders)

    def failed(self, error: BaseException) -> BaseException:
        """The error to raise for ``error`` met while writing: a UserError naming the target (an
        OSError, or whatever a library made of our failed write), else ``error`` itself."""
        if isinstance(error, UserError):
            return error
        if self._failure is not None:
            return UserError(f"{self.path}: cannot write it ({self._failure})")
        if isinstance(error, OSError):
            return UserError(f"{self.path}: cannot write it ({os_reason(error)})")
        return error

    def __enter__(self) -> "AtomicFile":
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        if error is None:
            self.commit()
            return False
        self.discard()
        replacement = self.failed(error) if isinstance(error, Exception) else error
        if replacement is not error:
            raise replacement from None
        return False


class _Handle:
    """The minimal binary file object over an :class:`AtomicFile` (write, flush)."""

    def __init__(self, output: AtomicFile):
        self._output = output

    def write(self, data) -> int:
        return self._output.write(data)

    def flush(self) -> None:
        pass

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False


def write_file(path: PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically (creating its folder)."""
    with AtomicFile(path) as output:
        output.write(data)


def copy_file(source: PathLike, path: PathLike, chunk_size: int = 1 << 20) -> None:
    """Copies the file ``source`` to ``path`` byte for byte, atomically (creating its folder)."""
    try:
        reader = open(source, "rb")
    except OSError as error:
        raise UserError(f"{os.fspath(source)}: cannot read it ({os_reason(error)})") from None
    with reader, AtomicFile(path) as output:
        while True:
            try:
                chunk = reader.read(chunk_size)
            except OSError as error:
                raise UserError(f"{os.fspath(source)}: cannot read it ({os_reason(error)})") from None
            if not chunk:
                break
            output.write(chunk)


class Transaction:
    """An output committed or discarded as a whole. As a context manager: committed when the block
    succeeds, discarded when it raises (anything, a signal's exception included)."""

    def commit(self):
        raise NotImplementedError

    def discard(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        if error is None:
            self.commit()
        else:
            self.discard()
        return False


class AtomicFiles(Transaction):
    """Several files that appear together: each is written as an :class:`AtomicFile`, and all are
    renamed into place at the end (or all discarded). For ``--save`` comparisons and one image per
    time: a failed run changes none of the targets."""

    def __init__(self):
        self.files: List[AtomicFile] = []

    def file(self, path: PathLike) -> AtomicFile:
        output = AtomicFile(path)
        self.files.append(output)
        return output

    def write(self, path: PathLike, data: bytes) -> None:
        output = self.file(path)
        output.write(data)
        if output._fd is not None:  # release the descriptor now: a long run may hold many files
            try:
                os.fsync(output._fd)
                output._close_fd()
            except OSError as error:
                raise UserError(f"{output.path}: cannot write it ({os_reason(error)})") from None

    def commit(self) -> None:
        try:
            for output in self.files:
                output.commit()
        finally:
            self.discard()  # what a failed commit left

    def discard(self) -> None:
        for output in reversed(self.files):  # the first file's folders go last, once empty
            output.discard()


class _Claim:
    """An exclusive ``flock`` on ``FOLDER.lock``, beside the folder (its parent folders made where
    missing), removed on release."""

    def __init__(self, folder: str, what: str):
        self.folder = os.path.normpath(folder)
        self.lock_path = self.folder + ".lock"
        self.made_folders = make_parent_folder(self.lock_path)
        try:
            self._fd: Optional[int] = self._lock(what)
        except BaseException:
            remove_empty_folders(self.made_folders)
            raise
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
            os.write(self._fd, f"{os.getpid()}\n".encode())

    def _lock(self, what: str) -> int:
        parent_gone = 0
        while True:
            try:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except FileNotFoundError:
                # Another claim's release removed the (empty) folder the lock goes in since it was
                # made: make it again, a few times at most.
                parent_gone += 1
                if parent_gone > 3:
                    raise UserError(f"{self.folder}: cannot claim the folder ({self.lock_path}: its folder keeps "
                                    "vanishing)") from None
                self.made_folders += make_parent_folder(self.lock_path)
                continue
            except OSError as error:
                raise UserError(f"{self.folder}: cannot claim the folder ({self.lock_path}: "
                                f"{os_reason(error)})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                os.close(fd)
                if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise _held(self.folder, self.lock_path, what) from None
                raise UserError(f"{self.folder}: cannot claim the folder ({os_reason(error)})") from None
            # The holder before us may have removed the lock file between our open and flock:
            # then we hold a lock nobody else sees. Take it again on the file that is there.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.lock_path))
            except OSError:
                same = False
            if same:
                return fd
            os.close(fd)

    def release(self) -> None:
        """Removes the lock file, and the folders made for it where they are left empty (nothing
        was written beside the lock)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.remove(self.lock_path)  # while still held: a waiting run then re-checks (above)
            os.close(self._fd)
            self._fd = None
            remove_empty_folders(self.made_folders)


def _held(folder: str, lock_path: str, what: str) -> UserError:
    return UserError(f"{folder}: another run is writing {what} (it holds {lock_path}); wait for it to finish or "
                     "choose another folder")


def check_unclaimed(folder: PathLike, what: str = "it") -> None:
    """The UserError :func:`claim_folder` would raise if another run holds ``folder`` now, found
    without creating anything (no lock file, no folder): for a program that checks everything
    before its first output. Claiming it later is what keeps a second run out."""
    folder = os.path.normpath(os.fspath(folder))
    lock_path = folder + ".lock"
    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except OSError:  # no lock file (or none that can be read): nobody holds it
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise _held(folder, lock_path, what) from None
    finally:
        os.close(fd)  # releases the lock if it was taken


@contextlib.contextmanager
def claim_folder(folder: PathLike, what: str = "it") -> Iterator[None]:
    """Holds ``FOLDER.lock`` for the duration: a second run claiming the same folder gets a
    UserError at once. The lock goes when the process does (flock), so a killed run leaves none
    that blocks (at most the empty lock file)."""
    claim = _Claim(os.fspath(folder), what)
    try:
        yield
    finally:
        claim.release()


def _taken(folder: str) -> Optional[str]:
    """How ``folder`` is taken, as the rest of a message after its name, or None where it is free:
    missing or an empty folder (a link, even to one, is taken: the finished folder would not
    replace it)."""
    if os.path.islink(folder):
        return "is a link; expected a new or empty folder"
    if not os.path.lexists(folder):
        return None
    if not os.path.isdir(folder):
        return "is a file; expected a new or empty folder"
    return "already holds files; choose a new or empty folder" if os.listdir(folder) else None


class AtomicFolder(Transaction):
    """A new folder of files written under ``NAME.partial-XXXX/`` beside ``path`` and renamed to
    ``path`` by :meth:`commit` (``path`` must then not exist or be an empty folder). The folder
    is claimed from construction to commit or discard."""

    def __init__(self, path: PathLike, what: str = "this folder"):
        self.path = os.path.normpath(os.fspath(path))
        self._claim = _Claim(self.path, what)
        try:
            if _taken(self.path):
                raise self._taken_error()
            parent, name = os.path.split(os.path.abspath(self.path))
            _remove_leftovers(parent, name, claimed=True)
            self.temporary, _ = _new_temporary(parent, name, "", lambda path: os.mkdir(path, 0o700))
        except OSError as error:
            self._claim.release()
            raise UserError(f"{self.path}: cannot write the folder ({os_reason(error)})") from None
        except BaseException:
            self._claim.release()
            raise
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.temporary, 0o777 & ~umask)
        self.done = False
        _track(self)

    def _taken_error(self) -> UserError:
        """Why ``path`` is taken (found so by a check or by a move that was refused)."""
        taken = _taken(self.path) or "was taken while the folder was written; choose a new or empty folder"
        return UserError(f"{self.path} {taken}")

    def file_path(self, name: str) -> str:
        """Where the file ``name`` of the folder is written until the commit."""
        return os.path.join(self.temporary, name)

    def _move_to(self, target: str) -> bool:
        """Moves the finished folder to ``target`` where that is free (missing, or an empty folder,
        which it replaces): True. False where it is taken, whether seen so before the move or found
        so by it (another process may write there at any time: the folder then stays in its
        temporary)."""
        if _taken(target):
            return False
        try:
            if os.path.isdir(target):
                os.rmdir(target)  # empty (checked): the finished folder takes its place
            os.rename(self.temporary, target)
        except OSError as error:
            if error.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                return False
            raise
        return True

    def _finish(self) -> None:
        self.done = True
        self._claim.release()
        _untrack(self)

    def commit(self) -> None:
        if self.done:
            return
        try:
            if not self._move_to(self.path):
                raise self._taken_error()
        except UserError:
            self.discard()
            raise
        except OSError as error:
            self.discard()
            raise UserError(f"{self.path}: cannot move the finished folder there ({os_reason(error)})") from None
        self._finish()

    def commit_or_keep_beside(self, tries: int = 100) -> str:
        """Commits, and returns where the folder now is: ``path``; or, when ``path`` was taken while
        the folder was written (files appeared in it, or a file took its name, up to the moment of
        the move), the first free ``PATH-2``, ``PATH-3``, ... (claimed while the folder moves there,
        new or empty), so that a long run's results are kept and no one else's files are mixed in
        or replaced; also when ``path`` is an empty folder that cannot be replaced (a mount point,
        no permission). A UserError, the folder discarded, when none of ``tries`` names is free or
        a move beside fails for another reason."""
        if self.done:
            raise ValueError("the folder was already committed or discarded")
        target = self.path
        try:
            moved = self._move_to(target)
            taken = None if moved else self._taken_error()
        except OSError as error:
            moved, taken = False, UserError(f"{target}: cannot move the finished folder there ({os_reason(error)})")
        if moved:
            self._finish()
            return target
        try:
            for number in range(2, tries + 2):
                target = f"{self.path}-{number}"
                try:
                    claim = _Claim(target, "a folder into it")
                except UserError:  # another run is writing it, or it cannot be claimed
                    continue
                try:
                    moved = self._move_to(target)
                finally:
                    claim.release()
                if moved:
                    self._finish()
                    return target
        except OSError as error:
            self.discard()
            raise UserError(f"{target}: cannot move the finished folder there ({os_reason(error)})") from None
        self.discard()
        raise UserError(f"{taken}; none of {self.path}-2 to {self.path}-{tries + 1} was free to keep it "
                        "instead") from None

    def discard(self) -> None:
        if not self.done:
            shutil.rmtree(self.temporary, ignore_errors=True)
            self._claim.release()  # and the folders made for this output, now empty
            self.done = True
        _untrack(self)

