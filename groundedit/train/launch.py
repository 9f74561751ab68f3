"""What ``groundedit train`` is asked to do, as one typed object, and the torchrun command that hands it on.

``--nproc-per-node N`` re-runs training under ``torch.distributed.run``: every rank receives the same
:class:`TrainArgs` serialised as JSON (one argument), so a train flag is declared once, in the CLI, and
never re-spelled as argv.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from groundedit.specs import DEFAULT_PROFILE

from .spec import TrainSpec, load_train_spec

# The hidden CLI command each rank runs (``groundedit.cli``); it takes the JSON of a TrainArgs.
RANK_COMMAND = "train-rank"


class TrainArgs(BaseModel):
    """A training run as the command line gave it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: list[str]
    out: Path
    profile: str = DEFAULT_PROFILE
    max_steps: int | None = None
    resume: bool = False
    lora: bool = False
    eight_bit: bool = False

    def spec(self) -> TrainSpec:
        """``stages/train.yaml`` under the profile, with the command line's overrides."""
        overrides: dict = {}
        if self.max_steps:
            overrides["max_steps"] = self.max_steps
        if self.lora:
            overrides["lora"] = {"enabled": True}
        if self.eight_bit:
            overrides["optim"] = {"eight_bit": True}
        return load_train_spec(self.profile, overrides=overrides or None)


def torchrun_command(nproc: int, args: TrainArgs) -> list[str]:
    """``python -m torch.distributed.run`` on this machine (one node, a free port) running every rank."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    return [*launcher, "-m", "groundedit.cli", RANK_COMMAND, args.model_dump_json()]
