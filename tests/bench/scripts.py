"""Loading a bench script (bench/ is not a package) as a module, for its tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[2] / "bench"


def load_script(file_name: str) -> ModuleType:
    """bench/``file_name`` as a module named ``bench_<stem>``, registered in sys.modules (dataclasses look their
    module up by name)."""
    spec = importlib.util.spec_from_file_location(f"bench_{Path(file_name).stem}", BENCH / file_name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
