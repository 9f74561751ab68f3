"""The pipeline's vocabulary: every record a stage reads, writes, rejects or exports.

A :class:`Sample` travels through the stages; each stage fills in its fields. Intermediate files
hold samples as JSON (one per Parquet row) and carry references to image bytes, never the bytes.
The exported :class:`ExportRecord` is the strict, documented JSON that lands in the shards; its JSON
Schema is generated into ``manifests/export_record.schema.json``.
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

EditType = Literal["color change", "remove", "replace", "add", "appearance", "others"]
EDIT_TYPES: tuple[str, ...] = get_args(EditType)
CandidateSource = Literal["sa1b", "grounded-sam", "mined", "whole-image"]
Dataset = Literal["sa1b", "images", "pairs"]
Recipe = Literal["sa1b", "pairs"]
RECIPES: tuple[str, ...] = get_args(Recipe)
PairKind = Literal["jsonl", "bagel-parquet", "hf", "shards"]
PAIR_KINDS: tuple[str, ...] = get_args(PairKind)
EditKind = Literal["change", "remove", "add"]

BoxXYXY = tuple[float, float, float, float]

# The chain of thought's JSON keys (the paper's answer format), in step order: steps 1-2 ground the
# target in text, 3-4 describe the edit. Every model of a CoT (here, the VLM's answer, training's
# reader, the HF export) takes its keys from these.
COT_KEYS: tuple[str, str, str, str] = (
    "1_Scene_Description",
    "2_Target_Localization",
    "3_Editing_Description",
    "4_Post_Edit_Description",
)
SCENE, TARGET, EDITING, POST_EDIT = COT_KEYS


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class BlobRef(_Record):
    """Where the bytes of an image (or a JSON) live: a file, or a byte range of a tar member.

    ``path`` is absolute for inputs and relative to the run's output folder for artifacts a stage
    wrote. ``offset``/``size`` address the member's data inside the tar so readers seek, not scan.
    """

    path: str
    member: str | None = None
    offset: int | None = None
    size: int | None = None
    digest: str | None = Field(
        None,
        description="XXH3-128 of the bytes (32 hex digits), recorded when they were written or "
        "first read; every reader checks it, so bytes that changed since are never trusted",
    )


class RLE(_Record):
    """A COCO run-length-encoded mask (compressed ``counts`` string); ``size`` is ``[height, width]``."""

    size: tuple[int, int]
    counts: str


class Source(_Record):
    """The photo a sample comes from. ``width``/``height`` are the size every stage decodes it to:
    after EXIF orientation, and after ingest's downscaling (``max_side``) when ``original_size`` is set."""

    dataset: Dataset
    image_id: str
    file_name: str
    width: int
    height: int
    original_size: tuple[int, int] | None = Field(
        None, description="(width, height) of the file after EXIF orientation, when ingest downscaled it"
    )
    orientation: int = Field(1, description="EXIF orientation tag of the file (1 = none)")
    image: BlobRef
    annotation: BlobRef | None = None


class Tag(_Record):
    """An open-set tag of the image with its probability (RAM++), and its Chinese name when the tag
    vocabulary has a Chinese list (RAM++'s does)."""

    name: str
    score: float
    name_zh: str | None = None


class Candidate(_Record):
    """One segmented object that could become the editing target."""

    id: str
    source: CandidateSource
    label: str | None = None
    box_xyxy: BoxXYXY = Field(description="pixels, exclusive right/bottom: the tight bound of the mask")
    mask: RLE
    area: int = Field(description="mask area in pixels")
    score: float = Field(description="confidence of the candidate (SA-1B predicted IoU, or detector score)")
    predicted_iou: float | None = None
    stability_score: float | None = None
    text_score: float | None = None


class CoTSteps(BaseModel):
    """The four CoT steps under their record keys (extra keys ignored: training reads records with it)."""

    scene_description: str = Field(alias=SCENE)
    target_localization: str = Field(alias=TARGET)
    editing_description: str = Field(alias=EDITING)
    post_edit_description: str = Field(alias=POST_EDIT)

    def steps(self) -> tuple[str, str, str, str]:
        return (
            self.scene_description,
            self.target_localization,
            self.editing_description,
            self.post_edit_description,
        )


class CoT(CoTSteps):
    """The 4-step chain of thought: steps 1-2 ground the target in text, steps 3-4 describe the edit."""

    model_config = _Record.model_config


class Instructions(_Record):
    original: str
    rewritten: str | None = None


class Scores(_Record):
    """Scores stages attach to a sample; each is filled in by the stage that measures it."""

    saliency_keep: int | None = Field(None, description="saliency filter verdict, 1 = keep")
    region_edit_accuracy: float | None = Field(None, ge=1.0, le=5.0)
    seamless_quality: float | None = Field(None, ge=1.0, le=5.0)
    ega: float | None = Field(None, description="share of changed pixels inside the target box")
    change_outside: float | None = Field(None, description="share of pixels outside the box that changed")
    change_inside: float | None = Field(None, description="mean absolute change inside the box, 0..1")


def format_score(value: float | int | None) -> str:
    """A score as people read it, the same everywhere (report, rejection details): three decimals for a
    measured score, a verdict (int) as is, ``-`` when absent."""
    if value is None:
        return "-"
    if isinstance(value, bool | int):
        return str(int(value))
    return f"{value:.3f}"


class Rejection(_Record):
    """Why a stage dropped a sample. ``reason`` is a stable snake_case code; ``raw`` keeps model output."""

    stage: str
    reason: str
    detail: str = ""
    raw: str | None = None


class Provenance(_Record):
    """What produced a sample's fields at one stage, enough to reproduce it."""

    stage: str
    spec_hash: str
    models: list[str] = Field(default_factory=list)
    prompt_hash: str | None = None
    seed: int | None = None
    sampling: dict[str, float | int | str] | None = None
    counts: dict[str, int] | None = Field(
        None, description="stage-specific counts, e.g. dropped candidates by reason"
    )
    version: str


class MinedRegion(_Record):
    """How an edit pair's region was found (GVCoT's edit-region mining): the pixel proposal, the
    VLM's box, their agreement, and where the final mask came from."""

    pixel_box: tuple[int, int, int, int] = Field(description="tight bound of the pixel difference")
    pixel_area: int
    pixel_mask: RLE = Field(description="the cleaned pixel difference")
    changed_fraction: float = Field(description="share of pixels above the ΔE threshold, before cleanup")
    components: int
    mean_delta_e: float
    vlm_box: tuple[int, int, int, int] | None = None
    box_iou: float | None = Field(None, description="IoU of the VLM's box and the pixel box")
    edit_kind: EditKind | None = Field(None, description="what the VLM says the edit does to the region")
    mask_source: Literal["sam", "difference"] | None = None
    sam_iou: float | None = Field(None, description="IoU of SAM's mask and the pixel difference")


class GoTChain(_Record):
    """A GoT-style reasoning chain: the scene, the target with its box in [0, 1000), the operation,
    the result; ``text`` is the chain as one passage (the box written ``(x1,y1),(x2,y2)``)."""

    scene: str
    target: str
    box_1000: tuple[tuple[int, int], tuple[int, int]]
    operation: str
    result: str
    text: str


class Pair(_Record):
    """The given half of an edit pair: the edited image (``target``), how it was found and mined."""

    kind: PairKind
    origin: str
    target: BlobRef
    target_size: tuple[int, int] = Field(description="(width, height) of the target file, EXIF-oriented")
    rescaled: bool = Field(False, description="the target was another size (a pure rescale, undone)")
    global_edit: bool = False
    region: MinedRegion | None = None
    got: GoTChain | None = None


class Sample(_Record):
    """A sample as it moves between stages. Later stages fill fields in."""

    key: str = Field(description="unique, dot-free id used as the WebDataset key")
    source: Source
    tags: list[Tag] = Field(default_factory=list)
    candidates: list[Candidate] = Field(default_factory=list)
    num_candidates: int | None = Field(None, description="candidates seen by select (list is dropped)")
    target: Candidate | None = None
    edit_type: EditType | None = None
    instructions: Instructions | None = None
    cot: CoT | None = None
    scores: Scores = Field(default_factory=Scores)
    artifacts: dict[str, BlobRef] = Field(default_factory=dict)
    provenance: list[Provenance] = Field(default_factory=list)
    rejection: Rejection | None = None
    pair: Pair | None = None

    def reject(self, stage: str, reason: str, detail: str = "", raw: str | None = None) -> Sample:
        """Return a copy marked as rejected by ``stage``."""
        return self.model_copy(
            update={"rejection": Rejection(stage=stage, reason=reason, detail=detail, raw=raw)}
        )


class Cell(_Record):
    """Where an image lives inside a table (Parquet or Arrow) row: the file, the row group (Parquet;
    0 for Arrow), the row inside it, the column, and for list columns the item."""

    model_config = ConfigDict(extra="forbid", frozen=True)  # hashable: cells key what was read
    path: str
    row_group: int
    row: int
    column: str
    item: int | None = None


class PairEntry(_Record):
    """The given side of an edit pair, as a reader found it: its edited image and instruction.
    ``source_cell``/``target_cell`` are set when the images are embedded in a table (the source
    stage copies them into its artifact tar); ``target`` is then the row group's reference."""

    kind: PairKind
    origin: str = Field(description="where the pair is in the input: file and line, row or step")
    target: BlobRef
    instruction: str | None = None
    source_cell: Cell | None = None
    target_cell: Cell | None = None


class SourceEntry(_Record):
    """One input item found by the ingest scan: an image and, for SA-1B, its annotation JSON; for an
    edit pair, the source image and the pair's other half."""

    key: str
    dataset: Dataset
    file_name: str
    image: BlobRef
    annotation: BlobRef | None = None
    pair: PairEntry | None = None
    error: str | None = Field(None, description="reason code when the scan itself found the item unusable")
    error_detail: str = ""


# --- the exported record -------------------------------------------------------------------------

_Int = Annotated[int, Field(strict=True)]
_Float = Annotated[float, Field(strict=True)]
Box1000 = tuple[tuple[_Int, _Int], tuple[_Int, _Int]]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


class ExportSource(_Strict):
    dataset: Dataset
    image_id: str
    file_name: str
    width: _Int = Field(description="width of src.jpg")
    height: _Int = Field(description="height of src.jpg")
    original_width: _Int = Field(
        description="the file's width (EXIF-oriented); larger than width when ingest downscaled it"
    )
    original_height: _Int = Field(description="the file's height (EXIF-oriented)")


class ExportTarget(_Strict):
    label: str = Field(
        description="the RAM++ tag Grounding DINO matched to the object; '' when no tag matched it "
        "(an SA-1B mask no detection box matched)"
    )
    candidate_source: CandidateSource
    box_xyxy: tuple[_Int, _Int, _Int, _Int] = Field(
        description="pixels of src.jpg, exclusive right/bottom; the tight bound of mask.png"
    )
    box_1000: Box1000 = Field(description="(x1,y1),(x2,y2) scaled to [0,1000), GoT's convention")
    area: _Int
    score: _Float
    mask: Literal["mask.png"] = "mask.png"


class ExportCoT(CoTSteps):
    model_config = _Strict.model_config


class ExportInstructions(_Strict):
    original: str
    rewritten: str | None


class ExportScores(_Strict):
    saliency_keep: _Int | None = None
    region_edit_accuracy: _Float | None = None
    seamless_quality: _Float | None = None
    ega: _Float | None = None
    change_outside: _Float | None = None
    change_inside: _Float | None = None


class ExportSampling(_Strict):
    """The decoding settings of the try whose answer was kept (VLM stages)."""

    max_new_tokens: _Int
    temperature: _Float
    top_p: _Float
    seed: _Int
    attempts: _Int


class ExportCount(_Strict):
    name: str
    count: _Int


class ExportProvenance(_Strict):
    """One stage's provenance. Null where the stage has no such thing (a model-free stage has no
    prompt, an unseeded one no seed, only VLM stages sample); ``counts`` is a list (possibly empty),
    so that every record has the same fields whatever the stage counted."""

    stage: str
    spec_hash: str
    models: list[str]
    prompt_hash: str | None
    seed: _Int | None
    sampling: ExportSampling | None
    counts: list[ExportCount] = Field(description="stage-specific counts, e.g. dropped detections by reason")
    version: str


class ExportRegion(_Strict):
    """How an edit pair's region was mined (see :class:`MinedRegion`); the mask is ``mask.png``."""

    pixel_box: tuple[_Int, _Int, _Int, _Int]
    pixel_area: _Int
    changed_fraction: _Float
    mean_delta_e: _Float
    vlm_box: tuple[_Int, _Int, _Int, _Int] | None
    box_iou: _Float | None
    edit_kind: EditKind | None
    mask_source: str | None = Field(description="'sam' or 'difference'; null for a global edit")
    sam_iou: _Float | None


class ExportGoT(_Strict):
    scene: str
    target: str
    box_1000: Box1000
    operation: str
    result: str
    text: str = Field(description="the chain as one passage; the target step writes the box (x1,y1),(x2,y2)")


class ExportPair(_Strict):
    """Where an edit pair came from and what was mined from it (pairs recipe only)."""

    kind: PairKind = Field(description="the reader: jsonl, bagel-parquet, hf or shards")
    origin: str = Field(description="where in the input: file and line, row or step")
    target_width: _Int = Field(description="the given target file's size; edited.jpg is in src.jpg's frame")
    target_height: _Int
    rescaled: bool
    global_edit: bool
    region: ExportRegion | None
    got: ExportGoT | None


class ExportRecord(_Strict):
    """The ``json`` member of every exported sample. Every field has one type in every run (the Hugging
    Face ``datasets`` Features are :func:`groundedit.formats.features.record_features`); the fields a stage
    fills in (edit type, instructions, CoT, scores) are null only when the run's pipeline lacks it."""

    key: str
    source: ExportSource
    target: ExportTarget
    tags: list[str]
    tags_zh: list[str] = Field(
        description="Chinese names of `tags`, index for index (RAM++'s Chinese list); "
        "empty when the tag vocabulary has no Chinese list"
    )
    edit_type: EditType | None
    instructions: ExportInstructions | None
    cot: ExportCoT | None
    scores: ExportScores
    members: list[str] = Field(description="the WebDataset members of this sample")
    provenance: list[ExportProvenance]
    recipe: Recipe = Field(
        "sa1b",
        description="the recipe that made the sample: 'sa1b' (photos edited here) or 'pairs' (given edits)",
    )
    pair: ExportPair | None = Field(None, description="the edit pair it was made from (pairs recipe)")
