"""What the command lines in tools/ share: one-line errors and a quiet start.

Kept out of `enas4d_tf` on purpose: importing the package imports TensorFlow, whose start-up
banner the tools hide with `quiet_stderr`.

The house rule: bad input ends with ONE line naming the problem on stderr and a non-zero exit
(1 for bad input, 2 for bad flags), never a traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from collections.abc import Callable

from absl import flags


def fail(program: str, message, code: int = 1) -> None:
    """Prints `<program>: error: <message>` on one line to stderr and exits with `code`."""
    print(f"{program}: error: {' '.join(str(message).split())}", file=sys.stderr)
    sys.exit(code)


def flags_parser(program: str) -> Callable[[list[str]], list[str]]:
    """An `app.run(..., flags_parser=...)` that reports a bad flag, or an argument that is not
    a flag, in one line (exit 2).

    absl's own parser prints the error, a usage hint and a blank line.
    """

    def parse(argv: list[str]) -> list[str]:
        try:
            rest = flags.FLAGS(argv)
        except flags.Error as e:
            fail(program, e, code=2)
        if len(rest) > 1:
            fail(program, f"unexpected arguments: {' '.join(rest[1:])}", code=2)
        return rest

    return parse


def config_from_flags(config_cls, **given):
    """Builds the dataclass `config_cls` from the flags named like its fields.

    A field with no flag of its name keeps its default unless `given` supplies it; `given`
    also overrides a flag (for values the tool converts, such as comma-separated lists).
    """
    values = {}
    for field in dataclasses.fields(config_cls):
        if field.name in given:
            values[field.name] = given[field.name]
        elif field.name in flags.FLAGS:
            values[field.name] = flags.FLAGS[field.name].value
    return config_cls(**values)


@contextlib.contextmanager
def quiet_stderr():
    """Hides file descriptor 2 for the duration: TensorFlow's runtime prints a start-up banner
    there at import even with TF_CPP_MIN_LOG_LEVEL=3, which would bury a one-line error."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
