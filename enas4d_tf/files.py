"""Writing files so that a reader never sees half of one, and reading JSON in one line.

Every writer puts its bytes in a temporary file beside the target and renames it over the
target: a run killed midway leaves the old file (or none), never a truncated one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def _temporary_beside(path: str, suffix: str = "") -> Iterator[str]:
    """Yields a fresh temporary path in `path`'s folder, renamed over `path` on success and
    removed on any failure."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp_", suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_bytes_atomic(path: str, data: bytes) -> None:
    """Writes `data` to `path` atomically."""
    with _temporary_beside(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def write_json_atomic(path: str, obj, sort_keys: bool = True) -> None:
    """Writes `obj` as indented JSON (with a final newline) to `path` atomically."""
    text = json.dumps(obj, indent=2, sort_keys=sort_keys) + "\n"
    write_bytes_atomic(path, text.encode())


def save_model_atomic(model, path: str) -> None:
    """Saves a Keras model to `path` (a `.keras` file) atomically."""
    with _temporary_beside(path, suffix=".keras") as tmp:
        model.save(tmp)


def read_json(path: str, error: Callable[[str], Exception], what: str = "file") -> object:
    """Reads a JSON file; a missing, unreadable or malformed one raises `error(message)` with
    a one-line message naming `what` and `path`."""
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise error(f"{what} {path} not found") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise error(f"{what} {path} is unreadable or not JSON: {e}") from None
