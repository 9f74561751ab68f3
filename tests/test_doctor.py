"""`groundedit doctor`: every missing model of the paper profile with its command; loud CPU-torch warning."""

from __future__ import annotations

import os
from pathlib import Path

from groundedit import doctor
from groundedit.models import hub

PAPER_MISSING = {
    "tag.ram": "hf download xinyu1205/recognize-anything-plus-model ram_plus_swin_large_14m.pth",
    "ground.dino": "hf download IDEA-Research/grounding-dino-base",
    "ground.sam": "hf download facebook/sam-vit-huge",
    "saliency.vlm": "hf download Qwen/Qwen2.5-VL-7B-Instruct",
    "instruct.vlm": "hf download Qwen/Qwen2.5-VL-72B-Instruct",
    "rewrite.llm": "hf download Qwen/Qwen3-8B",
    "edit.editor": "hf download ByteDance-Seed/BAGEL-7B-MoT",
    "qc.vlm": "hf download Qwen/Qwen2.5-VL-7B-Instruct",
}


def test_paper_profile_lists_each_missing_model_with_its_command(tmp_path, monkeypatch, hf_cache):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(doctor, "nvidia_gpus", lambda: [])
    found = {f.subject: f for f in doctor.diagnose("paper")}
    for subject, command in PAPER_MISSING.items():
        assert found[subject].level == "missing" and found[subject].fix == command, subject
    lama = found["edit.inpainter"]
    assert lama.level == "missing"
    assert (
        lama.fix
        == f"curl -L --create-dirs -o {tmp_path}/models/big-lama.pt {hub.KNOWN_SOURCES['big-lama.pt']}"
    )
    for role in ("tags_file", "thresholds_file", "chinese_file"):
        assert found[f"tag.{role}"].level == "ok", "RAM++'s lists ship with groundedit"
    text = doctor.render(list(found.values()))
    assert "MISS] instruct.vlm: Qwen/Qwen2.5-VL-72B-Instruct (not in the Hugging Face cache" in text
    assert "huggingface-cli" not in text and "hf://" not in "".join(f.fix or "" for f in found.values())


def test_models_that_are_there_are_ok(tmp_path, monkeypatch, hf_cache):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(doctor, "nvidia_gpus", lambda: [])
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"x")
    hf_cache("xinyu1205/recognize-anything-plus-model", "ram_plus_swin_large_14m.pth", weights)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "big-lama.pt").write_bytes(b"x")
    found = {f.subject: f for f in doctor.diagnose("paper")}
    assert found["tag.ram"].level == "ok" and "in the Hugging Face cache" in found["tag.ram"].detail
    assert found["edit.inpainter"].level == "ok" and found["edit.inpainter"].fix is None


def test_cpu_torch_on_a_gpu_machine_is_a_loud_warning(monkeypatch):
    import torch

    monkeypatch.setattr(torch.version, "cuda", None)
    gpus = ["NVIDIA H100 80GB HBM3, 81559 MiB, 580.65.06"]
    warnings = [f for f in doctor.torch_findings(gpus) if f.level == "warn"]
    assert len(warnings) == 1
    assert "CPU-ONLY TORCH ON A MACHINE WITH 1 NVIDIA GPU(S)" in warnings[0].detail
    assert warnings[0].fix.startswith("make install-gpu") and "'torch===2.13.0'" in warnings[0].fix
    assert not [f for f in doctor.torch_findings([]) if f.level == "warn"], "no GPUs, nothing to warn about"


def test_gpus_are_read_from_nvidia_smi(tmp_path, monkeypatch):
    smi = tmp_path / "nvidia-smi"
    smi.write_text(
        "#!/bin/sh\necho 'NVIDIA H200, 143771 MiB, 580.82.07'\necho 'NVIDIA H200, 143771 MiB, 580.82.07'\n"
    )
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert doctor.nvidia_gpus() == ["NVIDIA H200, 143771 MiB, 580.82.07"] * 2


def test_vllm_is_missing_only_where_a_stage_needs_it(monkeypatch):
    import importlib.metadata

    real = importlib.metadata.version

    def version(name):
        if name == "vllm":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "version", version)
    assert doctor.vllm_finding(["qc"]).level == "missing"
    assert doctor.vllm_finding(["qc"]).fix == "make install-gpu"
    assert doctor.vllm_finding([]).level == "info"


def test_doctor_command_exits_1_and_prints_the_fixes(hf_cache, capsys, monkeypatch):
    """The command in this process, with an empty Hugging Face cache (``hf_cache``)."""
    from groundedit.cli import main

    monkeypatch.chdir(Path(__file__).resolve().parent.parent)
    assert main(["doctor", "--profile", "paper"]) == 1, capsys.readouterr().err
    stdout = capsys.readouterr().out
    assert "get it: hf download Qwen/Qwen2.5-VL-72B-Instruct" in stdout
    assert stdout.rstrip().endswith("problem(s): see WARN / MISS lines")
    rc = main(["doctor", "--profile", "tiny"])
    stdout = capsys.readouterr().out
    assert rc == 0 and stdout.rstrip().endswith("ready"), stdout
