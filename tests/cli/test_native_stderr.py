"""Native writes to descriptor 2 are set aside; Python's sys.stderr still reaches the terminal."""

from __future__ import annotations

import os
import subprocess
import sys

from groundedit.cli.native_stderr import NativeStderr


def test_native_lines_are_set_aside_and_python_lines_are_not(capfd, tmp_path):
    with NativeStderr() as native:
        os.write(2, b"[native] core_worker.cc: a C++ log line\n")
        subprocess.run(
            [sys.executable, "-c", "import os; os.write(2, b'[child] inherited fd 2\\n')"], check=True
        )
        print("progress and messages", file=sys.stderr)
    print("after", file=sys.stderr)
    os.write(2, b"native after\n")
    err = capfd.readouterr().err
    assert err == "progress and messages\nafter\nnative after\n"
    assert native.text() == "[native] core_worker.cc: a C++ log line\n[child] inherited fd 2\n"
    native.save(tmp_path / "logs" / "ray-driver.log")
    native.save(tmp_path / "logs" / "ray-driver.log")
    assert (tmp_path / "logs" / "ray-driver.log").read_text() == native.text() * 2, "appended"


def test_nothing_set_aside_writes_no_file(tmp_path):
    with NativeStderr() as native:
        pass
    native.save(tmp_path / "logs" / "ray-driver.log")
    assert not (tmp_path / "logs").exists()
