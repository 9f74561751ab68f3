"""The stages of a run: their order, specs (as workers receive them), classes and chain hashes.

A stage's *chain hash* combines its spec hash (spec + prompt, plus the seed for seeded stages) with
its upstream stage's chain hash, so a changed spec or prompt changes that stage's hash and every
later one. Specs are resolved here, in the driver, once: workers get the prompt text and model
locations the driver resolved (:meth:`~groundedit.specs.StageSpec.for_workers`).
"""

from __future__ import annotations

from groundedit.formats.manifest import digest
from groundedit.formats.runconfig import RunConfig
from groundedit.formats.tar import DIGEST_ALGORITHM
from groundedit.specs import RECIPE_FILES, SpecError, StageSpec, load_pipeline, load_spec
from groundedit.stages import STAGES, SinkStage, SourceStage, Stage


class StageChain:
    def __init__(self, config: RunConfig):
        self.config = config
        self.order = load_pipeline(recipe=config.recipe)
        self.specs: dict[str, StageSpec] = {}
        self.classes: dict[str, type] = {}
        for name in self.order:
            if name not in STAGES:
                raise SpecError(f"the {config.recipe} recipe's pipeline file names unknown stage '{name}'")
            spec = load_spec(name, config.profile)
            try:
                STAGES[name].Params.model_validate(spec.params)
            except ValueError as e:
                raise SpecError(f"stages/{name}.yaml (profile {config.profile}): {e}") from e
            self.specs[name] = spec.for_workers()
            self.classes[name] = STAGES[name]
        self._check_shape()
        check_contracts(self.order, STAGES, f"stages/{RECIPE_FILES[config.recipe]}")
        self.hashes = self._chain_hashes()

    def _check_shape(self) -> None:
        kinds = [self.classes[n] for n in self.order]
        if not issubclass(kinds[0], SourceStage) or not issubclass(kinds[-1], SinkStage):
            raise SpecError(
                "the pipeline must start with a source stage (ingest) and end with a sink (export)"
            )
        if not all(issubclass(k, Stage) for k in kinds[1:-1]):
            raise SpecError("stages between the source and the sink must be sample-to-sample stages")

    def _chain_hashes(self) -> dict[str, str]:
        # every record carries content digests: another digest algorithm redoes every stage
        chain, prev = {}, DIGEST_ALGORITHM
        for name in self.order:
            seed = self.config.seed if self.classes[name].uses_seed else None
            prev = chain[name] = digest(prev, self.specs[name].spec_hash(), seed)
        return chain

    @property
    def source(self) -> str:
        return self.order[0]

    @property
    def sink(self) -> str:
        return self.order[-1]

    def previous(self, name: str) -> str | None:
        i = self.order.index(name)
        return self.order[i - 1] if i else None

    def later(self, name: str) -> list[str]:
        return self.order[self.order.index(name) + 1 :]


def check_contracts(
    order: list[str], registry: dict[str, type], pipeline_file: str = "stages/pipeline.yaml"
) -> None:
    """Refuse, in one line, an order in which a stage reads a field that neither the source nor an
    earlier stage writes (:attr:`~groundedit.stages.base.BaseStage.reads`), naming who writes it
    (a later stage, or a stage of ``registry`` the pipeline lacks)."""
    written: list[str] = []
    for i, name in enumerate(order):
        for field in registry[name].reads:
            if any(_provides(w, field) for w in written):
                continue
            later = [n for n in order[i + 1 :] if any(_provides(w, field) for w in registry[n].writes)]
            elsewhere = [n for n, c in registry.items() if any(_provides(w, field) for w in c.writes)]
            if later:
                why = f"which '{later[0]}' writes after it: put '{later[0]}' before '{name}'"
            elif elsewhere:
                why = f"which only '{elsewhere[0]}' writes, and the pipeline has no '{elsewhere[0]}'"
            else:
                why = "which no stage writes"
            raise SpecError(f"{pipeline_file}: stage '{name}' reads '{field}', {why}")
        written += registry[name].writes


def _provides(written: str, field: str) -> bool:
    """Whether writing ``written`` fills ``field`` in (a field, or one part of one)."""
    return field == written or field.startswith(written + ".")
