"""What a stage is: a small class with ``setup()``, ``process_batch()`` and ``teardown()``.

Constructing a stage is cheap and the object pickles (executors ship it to workers); models load in
``setup()``, once per worker. Stages never import Ray: executors decide where they run.

Three shapes share this base:
- :class:`Stage` maps samples to samples (kept, or returned with ``rejection`` set);
- :class:`SourceStage` plans units from the run's input and turns :class:`SourceEntry` rows into
  samples (ingest);
- :class:`SinkStage` writes one unit's kept samples as a part of the final output, in a worker
  like any stage (export); the driver only decides how parts combine into shards.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, ConfigDict

from groundedit import __version__
from groundedit.formats.runconfig import RunConfig
from groundedit.formats.tar import ArtifactPack
from groundedit.records import Provenance, Sample, SourceEntry
from groundedit.specs import StageSpec

if TYPE_CHECKING:
    from groundedit.formats.commits import PartSample
    from groundedit.formats.listing import TarListings
    from groundedit.formats.scan import KeyIndex, PlannedUnit
    from groundedit.models.hub import Requirement


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass
class UnitIO:
    """What a stage may touch while processing one unit: its id and its artifact pack."""

    unit: str
    out: Path
    artifacts: ArtifactPack


class BaseStage(ABC):
    name: ClassVar[str]
    Params: ClassVar[type[BaseModel]] = NoParams
    uses_seed: ClassVar[bool] = False
    # The stage's contract with the :class:`Sample` (NeMo Curator style). A name is a Sample field, or
    # ``field.part`` for one part of it (``scores.ega``, ``artifacts.src.jpg``). ``reads``: what the stage
    # needs, so the source or an earlier stage must write it (the chain checks the order at load);
    # ``reads_if_present``: what it uses when an earlier stage wrote it; ``writes``: what it fills in.
    # Rejecting a sample and appending to its provenance are every stage's protocol, not a contract.
    reads: ClassVar[tuple[str, ...]] = ()
    reads_if_present: ClassVar[tuple[str, ...]] = ()
    writes: ClassVar[tuple[str, ...]] = ()
    # Seconds ``setup()`` took that no unit record has been charged with yet (see runner.setup_stage).
    unbilled_setup_seconds: float = 0.0

    def __init__(self, spec: StageSpec, config: RunConfig):
        self.spec = spec
        self.config = config
        self.params = self.Params.model_validate(spec.params)

    def setup(self) -> None:
        """Load models and other heavy state; called once per worker before any batch."""

    def teardown(self) -> None:
        """Release what ``setup`` acquired."""

    def model_ids(self) -> list[str]:
        return list(self.spec.models.values())

    def requirements(self) -> list[Requirement]:
        """Every model, file and package ``setup`` will read: checked by the run's preflight before
        any work, and listed by ``groundedit doctor``. Stages that read more than their models add it."""
        from groundedit.models.hub import Requirement

        return [Requirement(self.name, role, ref) for role, ref in self.spec.models.items()]

    def provenance(self, **extra) -> Provenance:
        return Provenance(
            stage=self.name,
            spec_hash=self.spec.spec_hash(),
            models=self.model_ids(),
            prompt_hash=self.spec.prompt_hash(),
            seed=self.config.seed if self.uses_seed else None,
            version=__version__,
            **extra,
        )


class Stage(BaseStage):
    """Maps a batch of samples to the same samples, each kept or marked rejected."""

    @abstractmethod
    def process_batch(self, batch: list[Sample], io: UnitIO) -> list[Sample]:
        """Return one sample per input, in order; rejected ones have ``rejection`` set."""


class SourceStage(BaseStage):
    """Turns the run's input into samples."""

    @abstractmethod
    def plan(self, keys: KeyIndex, listings: TarListings | None = None) -> Iterator[PlannedUnit]:
        """Scan the input and group it into units, in a stable order, lazily; ``keys`` holds the
        sample keys planned so far (to flag duplicates), ``listings`` the input tars listed by
        earlier plannings of the run folder (reused while a tar is unchanged)."""

    @abstractmethod
    def process_batch(self, batch: list[SourceEntry], io: UnitIO) -> list[Sample]:
        """Return one sample per entry; unusable ones rejected with a specific reason."""

    @abstractmethod
    def reject_entry(self, entry: SourceEntry, reason: str, detail: str) -> Sample:
        """A rejected sample for an entry that could not be read at all."""


class SinkStage(BaseStage):
    """Writes each unit's kept samples as a part of the final output (in workers); the driver
    combines parts into the output in unit order."""

    @abstractmethod
    def write_part(self, samples: list[Sample], path: Path) -> tuple[list[PartSample], str]:
        """Write ``samples`` into the part file ``path`` (atomically; none if there are no samples);
        return where each sample lies in it and the digest of the file."""
