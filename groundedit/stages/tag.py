"""tag: open-set tags per image with RAM++ (our module, official checkpoint), per-class thresholds."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from groundedit.pixels import decode_batch
from groundedit.records import Sample, Tag
from groundedit.stages.base import Stage, UnitIO


class TagParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tags_file: str | None = Field(
        None, description="tag list; default: ram_tag_list.txt beside the checkpoint"
    )
    thresholds_file: str | None = Field(
        None, description="per-class thresholds; default: beside the checkpoint"
    )
    max_tags: int | None = Field(None, ge=1, description="keep at most this many tags, most probable first")
    dtype: str | None = Field("float32", description="thresholds were calibrated in float32")


class TagStage(Stage):
    name = "tag"
    Params = TagParams

    def setup(self) -> None:
        from groundedit.models.hub import quiet_loading, resolve
        from groundedit.models.perception import Tagger

        quiet_loading()
        p = self.params
        self.tagger = Tagger.from_pretrained(
            resolve(self.spec.model_ref("ram")),
            tags_file=p.tags_file,
            thresholds_file=p.thresholds_file,
            dtype=p.dtype,
        )

    def process_batch(self, batch: list[Sample], io: UnitIO) -> list[Sample]:
        out, images, where = decode_batch(batch, self.name)
        for i, tags in zip(
            where, self.tagger.tag(images, max_tags=self.params.max_tags) if images else [], strict=True
        ):
            s = batch[i]
            found = [Tag(name=t, score=round(float(p), 4)) for t, p in tags]
            out[i] = s.model_copy(update={"tags": found, "provenance": [*s.provenance, self.provenance()]})
        return out
