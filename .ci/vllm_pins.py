"""Does `pip install -e '.[vllm]'` move any package this venv already has? (`make check-vllm-pins`)

Asks pip to resolve the vllm extra against the installed venv without installing anything
(`--dry-run --report`), then lists every already-installed package it would change. The base
dependencies pin what vLLM pins, so the tests run on what a GPU machine runs: this prints nothing
and exits 0 while that holds, and names each package (installed -> vLLM's) when a vLLM bump breaks it.
Needs the package index (it resolves, it does not download wheels where the index serves metadata).
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--dry-run", "--report", str(report)]
        subprocess.run([*cmd, "-e", f"{ROOT}[vllm]"], check=True)
        plan = json.loads(report.read_text())["install"]
    moved = []
    for item in plan:
        name, version = item["metadata"]["name"], item["metadata"]["version"]
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if installed != version and name != "groundedit":
            moved.append(f"{name} {installed} -> {version}")
    for line in moved:
        print(line)
    print(f"vllm extra: {len(plan)} packages to add, {len(moved)} installed ones it would move")
    return 1 if moved else 0


if __name__ == "__main__":
    sys.exit(main())
