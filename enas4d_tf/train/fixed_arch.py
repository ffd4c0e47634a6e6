"""One architecture trained alone, from scratch: which network, which exits, which weights.

A run with `TrainConfig.arch_file` trains one architecture of the space with the project's
recipe instead of the supernet (`tools.train --arch_file=F`). The file is an
architecture file as the search writes it, or a bare `Arch.to_dict()` JSON; either may carry
`"exit": s` (numbered from 1), which makes it a static network cut at exit `s`: its groups
`<= s` and exit `s`'s head, at the cost `enas4d_tf.model.macs.truncated_macs`. Such a network
is trained by a forward pass that stops at stage `s` (`Supernet.call(num_stages=s)`), so a
step costs what the network computes, and its loss is exit `s`'s alone.

Nothing here imports TensorFlow: tools.train reads and checks the file before it loads TF.

Example:
  >>> fixed = read_fixed_arch("runs/demo/search/archs/static_1M.json", space)
  >>> fixed.num_stages(space), fixed.exits(space)
  (1, [1])
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from enas4d_tf.errors import Enas4dError, TrainError, WorkdirError
from enas4d_tf.space import Arch, SearchSpace

# The run_config.json entry that names the architecture a fixed-architecture run trains.
RUN_CONFIG_KEY = "fixed_arch"


@dataclasses.dataclass(frozen=True)
class FixedArch:
    """The one architecture of a fixed-architecture run.

    Attributes:
      arch: the architecture (validated against the space).
      exit: the exit a cut network keeps (numbered from 1), or None for a multi-exit network.
      source: the file it was read from (absolute path).
    """

    arch: Arch
    exit: int | None
    source: str

    def num_stages(self, space: SearchSpace) -> int:
        """Stages the forward pass computes: `exit` for a cut network, else all `S`."""
        return space.num_stages if self.exit is None else self.exit

    def exits(self, space: SearchSpace) -> list[int]:
        """The exits the network has and trains, numbered from 1."""
        return list(range(1, space.num_stages + 1)) if self.exit is None else [self.exit]

    def exit_weights(self, exit_weights: np.ndarray) -> np.ndarray:
        """Loss weights of the computed exits: the recipe's (`exit_weights`, normalised, one
        per exit of the space) for a multi-exit network; for a network cut at `s`, weight 1
        on exit `s` and 0 on the exits before it (their classifiers are not part of it)."""
        if self.exit is None:
            return np.asarray(exit_weights, np.float32)
        weights = np.zeros(self.exit, np.float32)
        weights[-1] = 1.0
        return weights

    def record(self) -> dict:
        """The `run_config.json` entry: the architecture and exit trained (a resumed run must
        train the same ones) and the file they came from."""
        return {"arch": self.arch.to_dict(), "exit": self.exit, "source": self.source}

    def describe(self) -> str:
        """Words for log lines: `architecture <file> (cut at exit 1)`."""
        cut = "every exit" if self.exit is None else f"cut at exit {self.exit}"
        return f"architecture {self.source} ({cut})"


def read_fixed_arch(path: str, space: SearchSpace) -> FixedArch:
    """Reads the architecture a fixed-architecture run trains.

    Args:
      path: an architecture file (as the search writes it) or a bare `Arch.to_dict()` JSON,
        either with an optional `"exit": s` (an int in `1..S`; null or absent: every exit).
      space: the run's search space; the architecture must be one of its.

    Returns:
      The FixedArch.

    Raises:
      TrainError: the file is missing or unreadable, not JSON, not an architecture, not one
        of `space`'s, or its exit is not an int in `1..S` (one line naming the file).
    """
    if not os.path.isfile(path):
        what = "is not a file" if os.path.exists(path) else "does not exist"
        raise TrainError(f"architecture file {path} {what}")
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise TrainError(f"architecture file {path} is unreadable or not JSON: {e}") from None
    source = os.path.abspath(path)
    try:
        if isinstance(data, dict) and "arch" in data:
            arch, exit = _from_search_file(path, space)
        else:
            arch, exit = _from_bare_arch(data, space)
    except Enas4dError as e:
        message = str(e)
        if not message.startswith(f"architecture file {path}"):
            message = f"architecture file {path}: {message}"
        raise TrainError(message) from None
    return FixedArch(arch, exit, source)


def _from_search_file(path: str, space: SearchSpace) -> tuple[Arch, int | None]:
    # The export's reader owns the architecture-file schema (format version, thresholds, and
    # the exit of a network cut at exit s).
    from enas4d_tf.export import formats

    spec = formats.read_arch_file(path, space)
    return spec.arch, spec.exit


def _from_bare_arch(data, space: SearchSpace) -> tuple[Arch, int | None]:
    exit = None
    if isinstance(data, dict) and "exit" in data:
        data = dict(data)
        exit = check_exit(data.pop("exit"), space.num_stages)
    arch = Arch.from_dict(data)
    try:
        space.validate(arch)
    except ValueError as e:
        raise TrainError(f"the architecture is not one of preset {space.name!r}: {e}") from None
    return arch, exit


def check_exit(exit, num_stages: int) -> int | None:
    """An architecture's `exit`: None (every exit) or an int in `1..num_stages`.

    Raises:
      TrainError: anything else.
    """
    if exit is None:
        return None
    if isinstance(exit, bool) or not isinstance(exit, int):
        raise TrainError(f"exit must be an int in 1..{num_stages} or null, got {exit!r}")
    if not 1 <= exit <= num_stages:
        raise TrainError(f"exit {exit} is outside 1..{num_stages} (exits are numbered from 1)")
    return exit


def check_same_arch(previous: dict | None, fixed: FixedArch, root: str) -> None:
    """A workdir is resumed only by a run of the architecture and exit it trained.

    Args:
      previous: the workdir's run config (None: a fresh workdir).
      fixed: this run's architecture.
      root: the workdir (for the message).

    Raises:
      WorkdirError: the workdir trained a supernet, or another architecture or exit.
    """
    if previous is None:
        return
    before = previous.get(RUN_CONFIG_KEY)
    if before is None:
        raise WorkdirError(f"{root} trained a supernet, not one architecture: use another workdir")
    mine = fixed.record()
    if before.get("arch") != mine["arch"] or before.get("exit") != mine["exit"]:
        cut = "every exit" if before.get("exit") is None else f"cut at exit {before['exit']}"
        raise WorkdirError(
            f"{root} trained another architecture ({before.get('source')}, {cut}), not "
            f"{fixed.describe()}: use another workdir"
        )
