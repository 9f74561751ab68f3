"""``groundedit doctor``: is this machine ready to run a profile, and if not, what to type.

Checks, in order: torch (version, CUDA build), the GPUs the machine has (``nvidia-smi``, or the
driver's ``/proc`` entries) and the ones torch sees, vLLM, and every model, file and package the
profile's stages will read — the same requirements the run's preflight checks — each with the exact
command that gets it when it is missing. A CPU-only torch on a machine with NVIDIA GPUs gets a loud
warning: every model would run on the CPU and vLLM could not start.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from groundedit.models.hub import Requirement, availability, hub_reachable

# PyPI's torch 2.13.0 for Linux x86_64 is the CUDA 13.0 build vLLM 0.32.0's kernels are compiled
# against; `===` refuses local builds such as 2.13.0+cpu (see the Makefile's install-gpu).
TORCH_CUDA_INSTALL = "pip install --force-reinstall 'torch===2.13.0'"
GPU_INSTALL = "make install-gpu"


@dataclass(frozen=True)
class Finding:
    """One line of the report. ``level``: ok, info, warn (runs, but not as it should) or missing."""

    level: str
    subject: str
    detail: str
    fix: str | None = None

    def line(self) -> str:
        mark = {"ok": "ok  ", "info": "    ", "warn": "WARN", "missing": "MISS"}[self.level]
        text = f"[{mark}] {self.subject}: {self.detail}"
        return text + (f"\n         get it: {self.fix}" if self.fix else "")


def nvidia_gpus() -> list[str]:
    """The NVIDIA GPUs of this machine, whatever torch can use: ``nvidia-smi``, else the driver's /proc."""
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run(
                [smi, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=20,
                check=True,
            ).stdout
            return [line.strip() for line in out.splitlines() if line.strip()]
        except (OSError, subprocess.SubprocessError):
            pass
    gpus = Path("/proc/driver/nvidia/gpus")
    if not gpus.is_dir():
        return []
    names = []
    for info in sorted(gpus.glob("*/information")):
        model = next((ln for ln in info.read_text().splitlines() if ln.startswith("Model:")), "Model: ?")
        names.append(model.split(":", 1)[1].strip())
    return names


def torch_findings(machine_gpus: list[str]) -> list[Finding]:
    import torch

    cuda_build = torch.version.cuda
    build = f"CUDA {cuda_build} build" if cuda_build else "CPU-only build"
    found = [Finding("ok", "torch", f"{torch.__version__} ({build})")]
    if machine_gpus:
        found.append(Finding("info", "GPUs on this machine", "; ".join(machine_gpus)))
    else:
        found.append(Finding("info", "GPUs on this machine", "none found (nvidia-smi, /proc/driver/nvidia)"))
    if cuda_build is None and machine_gpus:
        found.append(
            Finding(
                "warn",
                "torch",
                f"!!! CPU-ONLY TORCH ON A MACHINE WITH {len(machine_gpus)} NVIDIA GPU(S) !!! every model "
                "stage would run on the CPU and vLLM cannot start",
                f"{GPU_INSTALL}   (or: {TORCH_CUDA_INSTALL})",
            )
        )
    if cuda_build is not None:
        if torch.cuda.is_available():
            names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            found.append(Finding("ok", "GPUs torch sees", f"{len(names)}: {', '.join(names)}"))
        else:
            level = "warn" if machine_gpus else "info"
            found.append(
                Finding(level, "GPUs torch sees", "none (driver too old for this CUDA build, or no GPU)")
            )
    return found


def vllm_finding(vllm_stages: list[str]) -> Finding:
    try:
        return Finding("ok", "vllm", importlib.metadata.version("vllm"))
    except importlib.metadata.PackageNotFoundError:
        if vllm_stages:
            return Finding(
                "missing",
                "vllm",
                f"not installed; stages {', '.join(vllm_stages)} use backend vllm",
                GPU_INSTALL,
            )
        return Finding("info", "vllm", "not installed (no stage of this profile uses it)")


def stage_requirements(profile: str) -> tuple[list[Requirement], list[str]]:
    """Every requirement of the profile's stages (every recipe's), and the stages that use the vLLM
    backend."""
    from groundedit.formats.runconfig import RunConfig
    from groundedit.specs import RECIPE_FILES, load_pipeline, load_spec
    from groundedit.stages import STAGES

    config = RunConfig(out=Path("."), input=Path("."), profile=profile)
    reqs, vllm_stages = [], []
    for name in dict.fromkeys(n for recipe in RECIPE_FILES for n in load_pipeline(recipe=recipe)):
        spec = load_spec(name, profile)
        if spec.backend == "vllm":
            vllm_stages.append(name)
        reqs += [r for r in STAGES[name](spec, config).requirements() if r.kind != "package"]
    return reqs, vllm_stages


def requirement_findings(reqs: list[Requirement], hub_up: bool) -> list[Finding]:
    found = []
    for req in reqs:
        state = availability(req, hub_up)
        level = {"missing": "missing", "downloadable": "info"}.get(state.state, "ok")
        found.append(Finding(level, f"{req.stage}.{req.role}", f"{req.ref} ({state.detail})", state.fix))
    return found


def diagnose(profile: str) -> list[Finding]:
    """The whole report for ``profile``."""
    import groundedit

    reqs, vllm_stages = stage_requirements(profile)
    hub_up = hub_reachable()
    found = [Finding("info", "groundedit", f"{groundedit.__version__}, profile '{profile}'")]
    found += torch_findings(nvidia_gpus())
    found.append(vllm_finding(vllm_stages))
    found.append(Finding("info", "packages", package_versions()))
    found.append(hub_finding(hub_up))
    return found + requirement_findings(reqs, hub_up)


def package_versions() -> str:
    """Versions of the packages the model stages lean on (the base pins mirror vLLM's)."""
    out = []
    for name in ("transformers", "xgrammar", "accelerate", "huggingface_hub"):
        try:
            out.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            out.append(f"{name} missing")
    return ", ".join(out)


def hub_finding(hub_up: bool) -> Finding:
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_OFFLINE") == "1":
        state = "offline (HF_HUB_OFFLINE=1)"
    else:
        state = "reachable" if hub_up else "unreachable"
    return Finding("info", "Hugging Face hub", f"{state}; cache {constants.HF_HUB_CACHE}")


def render(findings: list[Finding]) -> str:
    problems = sum(f.level in ("missing", "warn") for f in findings)
    summary = "ready" if not problems else f"{problems} problem(s): see WARN / MISS lines"
    return "\n".join([f.line() for f in findings] + [summary])
