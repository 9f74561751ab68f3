"""Run every CPU benchmark once (`make bench`). GPU benchmarks take `--device cuda` by hand."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # benchmarks import each other (edit_cpu_side uses bagel_edit.build)
# (module file, argv) — CPU-sized settings; each prints its own ratios against a same-run baseline.
BENCHMARKS = [
    ("pipeline_cpu.py", ["--images", "16"]),
    ("driver_scale.py", ["--sizes", "1000,4000", "--plan-entries", "100000"]),
    ("edit_cpu_side.py", ["--config", "tiny", "--device", "cpu"]),
    ("perception.py", ["--config", "tiny", "--device", "cpu"]),
    ("bagel_edit.py", ["--config", "tiny", "--device", "cpu"]),
    # smoke size: one narrow layer, one ViT layer, a thin VAE, 64² images
    (
        "train_step.py",
        [
            "--device",
            "cpu",
            "--layers",
            "1",
            "--hidden",
            "256",
            "--vit-layers",
            "1",
            "--vae-ch",
            "32",
            "--image",
            "64",
            "--vocab",
            "4096",
            "--steps",
            "1",
        ],
    ),
]


def _takes_argv(fn) -> bool:
    import inspect

    return bool(inspect.signature(fn).parameters)


def main() -> int:
    for name, argv in BENCHMARKS:
        path = HERE / name
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.argv = [str(path), *argv]  # for benchmarks whose main() reads sys.argv
        module.main(argv) if _takes_argv(module.main) else module.main()
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
