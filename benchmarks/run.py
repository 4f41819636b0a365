"""Run every ``benchmarks/bench_*.py`` (each has a ``main()`` that prints its figures), or the ones
named on the command line: ``python benchmarks/run.py decide fleet``. The long ones in ``ON_REQUEST``
run only when named (``python benchmarks/run.py tune``).

Benchmarks report; they never fail a build. Each prints its figures and a ratio against a baseline
measured in the same run, so that numbers from a noisy 2-core machine stay comparable.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ON_REQUEST = {"tune", "service"}  # tens of minutes on 2 cores (tune: days searched twice; service: 10k targets)


def main() -> int:
    wanted = set(sys.argv[1:])
    for path in sorted(HERE.glob("bench_*.py")):
        name = path.stem.removeprefix("bench_")
        if (wanted and name not in wanted) or (not wanted and name in ON_REQUEST):
            continue
        spec = importlib.util.spec_from_file_location(path.stem, path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module  # dataclasses look their module up while the class is built
        spec.loader.exec_module(module)
        print(f"== {name}")
        started = time.perf_counter()
        sys.argv = [str(path)]  # each benchmark parses its own (default) options
        module.main()
        print(f"   ({time.perf_counter() - started:.1f} s)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
