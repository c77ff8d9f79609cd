"""A progress listener for the library tests: sqlmig.Progress with the methods given as callables,
e.g. `sqlmig.up(config, progress=listen(finished=done.append))`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlmig


def listen(**hooks: Callable[[Any], object]) -> sqlmig.Progress:
    unknown = set(hooks) - {name for name in vars(sqlmig.Progress) if not name.startswith("_")}
    assert not unknown, f"sqlmig.Progress has no method {sorted(unknown)}"

    class Heard(sqlmig.Progress):
        pass

    for name, hook in hooks.items():
        setattr(Heard, name, lambda self, arg, hook=hook: hook(arg))
    return Heard()
