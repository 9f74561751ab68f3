"""The package stays cheap to import: stages that hold a backend must pickle to workers quickly."""

from __future__ import annotations

import subprocess
import sys


def test_import_pulls_in_no_heavy_library():
    code = (
        "import sys, groundedit.models.chat\n"
        "heavy = [m for m in ('torch', 'transformers', 'xgrammar', 'vllm') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
