"""Writing files so that a reader never sees half of one, and checking places before writing.

Every writer puts its bytes in a temporary file beside the target and renames it over the
target: a run killed midway leaves the old file (or none), never a truncated one. A write
that fails (no space, no permission, a folder in the way) raises the caller's project error
in one line naming the file and saying whether its previous version was kept.

The written file gets the mode a plain `open(path, "w")` would give it: the mode of the file
it replaces, or 0666 less the umask for a new one (not `mkstemp`'s 0600).

`check_writable_dir` and `check_writable_file` let a tool refuse an unusable output location
before any work starts. This module does not import TensorFlow.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import stat
from collections.abc import Callable, Iterator

from enas4d_tf.errors import Enas4dError

ErrorFactory = Callable[[str], Exception]


def _open_temporary(folder: str, suffix: str) -> str:
    """Creates a new empty file `.tmp_<random><suffix>` in `folder` with mode 0666 less the
    umask (the kernel applies it, as for any new file) and returns its path."""
    for _ in range(100):
        tmp = os.path.join(folder, f".tmp_{secrets.token_hex(6)}{suffix}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"no free temporary name in {folder}")


def _kept(path: str) -> str:
    if os.path.isfile(path):
        return "its previous version was kept"
    return "nothing was written"


@contextlib.contextmanager
def _temporary_beside(path: str, error: ErrorFactory, suffix: str = "") -> Iterator[str]:
    """Yields a fresh temporary path in `path`'s folder, renamed over `path` on success and
    removed on any failure; an `OSError` becomes `error(<one line>)`."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        os.makedirs(folder, exist_ok=True)
        tmp = _open_temporary(folder, suffix)
        with contextlib.suppress(OSError):
            # A replaced file keeps its mode, as it would under a plain rewrite.
            os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
        yield tmp
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        reason = e.strerror or str(e)
        raise error(f"cannot write {path}: {reason}; {_kept(path)}") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.remove(tmp)


def write_bytes_atomic(path: str, data: bytes, error: ErrorFactory = Enas4dError) -> None:
    """Writes `data` to `path` atomically.

    Raises:
      error: (default `Enas4dError`) the file cannot be written; the message names `path`
        and says that its previous version, if any, was kept.
    """
    with _temporary_beside(path, error) as tmp, open(tmp, "wb") as f:
        f.write(data)


def write_json_atomic(
    path: str, obj, sort_keys: bool = True, error: ErrorFactory = Enas4dError
) -> None:
    """Writes `obj` as indented JSON (with a final newline) to `path` atomically.

    Raises:
      error: as `write_bytes_atomic`.
    """
    text = json.dumps(obj, indent=2, sort_keys=sort_keys) + "\n"
    write_bytes_atomic(path, text.encode(), error=error)


def save_model_atomic(model, path: str, error: ErrorFactory = Enas4dError) -> None:
    """Saves a Keras model to `path` (a `.keras` file) atomically.

    Raises:
      error: as `write_bytes_atomic`.
    """
    with _temporary_beside(path, error, suffix=".keras") as tmp:
        model.save(tmp)


def read_json(path: str, error: ErrorFactory, what: str = "file") -> object:
    """Reads a JSON file; a missing, unreadable or malformed one raises `error(message)` with
    a one-line message naming `what` and `path`."""
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise error(f"{what} {path} not found") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise error(f"{what} {path} is unreadable or not JSON: {e}") from None


def _nearest_existing(path: str) -> str:
    """`path` itself or its nearest ancestor that exists."""
    current = os.path.abspath(path)
    while not os.path.exists(current):
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    return current


def check_writable_dir(path: str, what: str, error: ErrorFactory = Enas4dError) -> None:
    """Checks that `path` is a folder this process can write into, or that it can be created.

    Nothing is created. A missing `path` is fine when its nearest existing ancestor is a
    writable folder (the writers create missing folders).

    Args:
      path: the folder.
      what: how the user knows it, for the message ("workdir", "--out folder").
      error: the exception class (or factory) to raise; default `Enas4dError`.

    Raises:
      error: `path` is empty, is a file, is not writable, or cannot be created (an ancestor
        is a file or is not writable). The message is one line naming `what` and `path`.
    """
    if not path:
        raise error(f"{what} is empty")
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise error(f"{what} {path} is a file, not a folder")
        if not os.access(path, os.W_OK | os.X_OK):
            raise error(f"{what} {path} is not writable (permission denied)")
        return
    ancestor = _nearest_existing(path)
    if not os.path.isdir(ancestor):
        raise error(f"{what} {path} cannot be created: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise error(f"{what} {path} cannot be created: {ancestor} is not writable")


def check_writable_file(path: str, what: str, error: ErrorFactory = Enas4dError) -> None:
    """Checks that the file `path` can be written (created or replaced) by the writers above.

    Nothing is created. Whether an existing file may be replaced is the caller's decision
    (for example an `--overwrite` flag); this only checks that it could be.

    Args:
      path: the file.
      what: how the user knows it, for the message ("--out", "report").
      error: the exception class (or factory) to raise; default `Enas4dError`.

    Raises:
      error: `path` is empty or a folder, an existing file is read-only, or its folder is not
        a writable folder and cannot be created. One line naming `what` and `path`.
    """
    if not path:
        raise error(f"{what} is empty")
    if os.path.isdir(path):
        raise error(f"{what} {path} is a folder, not a file")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise error(f"{what} {path} is read-only (permission denied)")
    folder = os.path.dirname(os.path.abspath(path))
    ancestor = _nearest_existing(folder)
    if not os.path.isdir(ancestor):
        raise error(f"{what} {path} cannot be written: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise error(f"{what} {path} cannot be written: {ancestor} is not writable")


def sha256(path: str) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
