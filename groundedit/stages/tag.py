"""tag: open-set tags per image with RAM++ (our module, official checkpoint), per-class thresholds."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from groundedit.image.pixels import decode_batch
from groundedit.records import Sample, Tag
from groundedit.stages.base import Stage, UnitIO


class TagParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tags_file: str | None = Field(
        None,
        description="tag list; default: ram_tag_list.txt beside the checkpoint, else RAM++'s shipped list",
    )
    thresholds_file: str | None = Field(
        None, description="per-class thresholds; default: ram_tag_list_threshold.txt beside the tag list"
    )
    chinese_file: str | None = Field(
        None,
        description="Chinese tag names, recorded when present; default: ram_tag_list_chinese.txt beside "
        "the tag list",
    )
    max_tags: int | None = Field(None, ge=1, description="keep at most this many tags, most probable first")
    dtype: str | None = Field("float32", description="thresholds were calibrated in float32")


class TagStage(Stage):
    name = "tag"
    Params = TagParams
    reads = ("source",)
    writes = ("tags",)

    def setup(self) -> None:
        from groundedit.models.hub import quiet_loading, resolve
        from groundedit.models.perception import Tagger

        quiet_loading()
        p = self.params
        self.tagger = Tagger.from_pretrained(
            resolve(self.spec.model_ref("ram")),
            tags_file=p.tags_file,
            thresholds_file=p.thresholds_file,
            chinese_file=p.chinese_file,
            dtype=p.dtype,
        )

    def requirements(self):
        """The checkpoint, and the vocabulary files the tagger will read beside it or from the shipped
        lists (a tiny model's builder writes its own, so only files named in the spec are checked)."""
        from groundedit.models.hub import TINY_PREFIX, Requirement, local_file
        from groundedit.models.perception.ram_vocab import SHIPPED_DIR, vocab_files

        p = self.params
        ref = self.spec.models["ram"]
        checkpoint = local_file(ref)
        files = vocab_files(
            checkpoint.parent if checkpoint else None, p.tags_file, p.thresholds_file, p.chinese_file
        )
        reqs = super().requirements()
        for role, path in files.required().items():
            named = getattr(p, role) is not None
            if ref.startswith(TINY_PREFIX) and not named:
                continue
            if named:
                fix = f"point stages/tag.yaml params.{role} at an existing file"
            elif path.parent == SHIPPED_DIR:
                fix = f"reinstall groundedit: RAM++'s lists ship in {SHIPPED_DIR}"
            else:
                fix = f"put {path.name} beside the tag list, or set stages/tag.yaml params.{role}"
            reqs.append(Requirement(self.name, role, str(path), kind="file", fix=fix))
        return reqs

    def process_batch(self, batch: list[Sample], io: UnitIO) -> list[Sample]:
        out, images, where = decode_batch(batch, self.name)
        for i, tags in zip(
            where, self.tagger.tag(images, max_tags=self.params.max_tags) if images else [], strict=True
        ):
            s = batch[i]
            found = [
                Tag(name=t, score=round(float(p), 4), name_zh=self.tagger.chinese_name(t)) for t, p in tags
            ]
            out[i] = s.model_copy(update={"tags": found, "provenance": [*s.provenance, self.provenance()]})
        return out
