"""The run's configuration: one object from the command line to every worker, and into ``run.json``.

The CLI resolves it once (:func:`groundedit.engine.settings.resolve_config`); the driver, the stage
chain, every worker and stage, ``groundedit status`` and the readers of a run folder all take this
object. Its *persisted* fields are ``manifests/run.json``: a run folder remembers them, so a rerun
continues with them. Its *per-invocation* fields (``out``, ``env``, ``run_id``) travel to the workers
but are never saved: they describe this invocation, not the run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from groundedit import __version__
from groundedit.formats.manifest import atomic_write_bytes
from groundedit.formats.runfolder import RunFolder
from groundedit.records import Recipe
from groundedit.specs import DEFAULT_PROFILE


class RunConfig(BaseModel):
    """How a run is made. Frozen and plain data, so it pickles to workers unchanged."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # per invocation: carried, never saved
    out: Path = Field(exclude=True, description="the run folder (--out), absolute")
    env: dict[str, str] = Field(
        default_factory=dict,
        exclude=True,
        description="the driver's settings workers apply before building a stage (GROUNDEDIT_*, "
        "Hugging Face cache and offline switches), whatever their own environment",
    )
    run_id: str = Field(
        "", exclude=True, description="tells this run's attempts at a unit from an earlier run's"
    )
    # persisted: manifests/run.json
    input: Path = Field(description="what the source stage reads (absolute)")
    profile: str = DEFAULT_PROFILE
    seed: int = Field(0, description="seed of every random choice")
    limit: int | None = Field(None, description="use only the first N input images")
    recipe: Recipe = Field("sa1b", description="the pipeline file the run follows: sa1b or pairs")
    input_kind: str | None = Field(
        None,
        description="pairs recipe: the reader of --input (jsonl, bagel-parquet, hf, shards); None: guessed",
    )
    columns: dict[str, str] = Field(
        default_factory=dict, description="pairs recipe: role -> column of a Hugging Face dataset"
    )
    version: str = Field(__version__, description="the groundedit that last ran in this folder")

    # Persisted fields that change what the stages produce: an existing run folder asked for another
    # value is refused unless the run reconfigures it. ``limit`` is not one (it only adds or drops units).
    GUARDED: ClassVar[tuple[str, ...]] = ("input", "profile", "seed", "recipe", "input_kind", "columns")

    @classmethod
    def settings(cls) -> list[str]:
        """The persisted fields a run may ask for (every one but the writer's version)."""
        return [n for n, f in cls.model_fields.items() if not f.exclude and n != "version"]

    @classmethod
    def load(cls, out: Path) -> RunConfig | None:
        """The configuration ``out`` was last run with (``None``: not a run folder yet)."""
        path = RunFolder(out).run_json
        if not path.is_file():
            return None
        return cls.model_validate({**json.loads(path.read_text()), "out": Path(out).resolve()})

    def save(self) -> None:
        """Write the persisted fields to ``run.json`` (the current version as the writer)."""
        record = self.model_copy(update={"version": __version__})
        atomic_write_bytes(RunFolder(self.out).run_json, record.model_dump_json(indent=1).encode())
