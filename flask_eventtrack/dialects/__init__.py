"""Dialects: one module per vendor wire format.

A dialect module defines ``NAME``, ``create_blueprint(state) -> Blueprint`` and,
optionally, ``commands`` (click commands added under ``flask eventtrack``).
Every public module in this package is a dialect.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def available_dialects() -> list[str]:
    """Names of the dialect modules shipped in this package."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def dialect_module(name: str) -> ModuleType:
    return importlib.import_module(f"{__name__}.{name}")
