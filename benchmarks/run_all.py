"""Run every CPU benchmark once (`make bench`). GPU benchmarks take `--device cuda` by hand."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# (module file, argv) — CPU-sized settings; each prints its own ratios against a same-run baseline.
BENCHMARKS = [
    ("pipeline_cpu.py", ["--images", "16"]),
]


def main() -> int:
    for name, argv in BENCHMARKS:
        path = HERE / name
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.main(argv)
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
