"""``--format hf``: the run's samples as a Hugging Face ``datasets`` folder (``load_from_disk``).

Columns and their types come from one function, :func:`hf_features`, so every export has the
same schema whatever the run produced (a column a run lacks is null, never a different type).
Images keep their encoded bytes (JPEG/PNG); ``record`` holds the full exported JSON record, as in
the shards, for fields without a column of their own. (Reading the shards themselves with
``load_dataset("webdataset", ...)`` takes the record's full nested types from
:func:`groundedit.formats.features.shard_features` instead.)
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from groundedit.exporters.base import ExportError, ExportSummary, fresh_folder, require_samples
from groundedit.formats.rundata import RunData
from groundedit.records import COT_KEYS

IMAGE_COLUMNS = {"src": "src.jpg", "grounded": "grounded.jpg", "edited": "edited.jpg", "mask": "mask.png"}


def hf_features():
    """The ``datasets.Features`` of an exported sample (the one place this schema is defined)."""
    from datasets import Features, Image, Sequence, Value

    return Features(
        {
            "key": Value("string"),
            **{col: Image() for col in IMAGE_COLUMNS},
            "edit_type": Value("string"),
            "instruction": Value("string"),
            "instruction_rewritten": Value("string"),
            "cot": {k: Value("string") for k in COT_KEYS},
            "target_label": Value("string"),
            "box_xyxy": Sequence(Value("int32"), length=4),
            "region_edit_accuracy": Value("float32"),
            "seamless_quality": Value("float32"),
            "ega": Value("float32"),
            "record": Value("string"),
        }
    )


def _rows(out: str):
    """One ``datasets`` row per exported sample (a top-level function: datasets pickles it)."""
    for s in RunData(out).samples(members=True):
        r = s.record
        cot = r.cot.model_dump(by_alias=True) if r.cot else dict.fromkeys(COT_KEYS)
        yield {
            "key": s.key,
            **{
                col: ({"bytes": s.members[m], "path": None} if m in s.members else None)
                for col, m in IMAGE_COLUMNS.items()
            },
            "edit_type": r.edit_type,
            "instruction": r.instructions.original if r.instructions else None,
            "instruction_rewritten": r.instructions.rewritten if r.instructions else None,
            "cot": cot,
            "target_label": r.target.label,
            "box_xyxy": list(r.target.box_xyxy),
            "region_edit_accuracy": r.scores.region_edit_accuracy,
            "seamless_quality": r.scores.seamless_quality,
            "ega": r.scores.ega,
            "record": r.model_dump_json(by_alias=True),
        }


def export_hf(run: RunData, to: Path) -> ExportSummary:
    """Write the run's samples as a ``datasets`` folder at the fresh folder ``to``."""
    try:
        from datasets import Dataset
    except ImportError as e:  # a core dependency; only a broken install lands here
        raise ExportError(f"--format hf needs the 'datasets' package ({e})") from e
    from datasets import disable_progress_bars

    require_samples(run)
    to = fresh_folder(to)
    summary = ExportSummary("hf", to.resolve())
    disable_progress_bars()
    with tempfile.TemporaryDirectory(prefix="groundedit-hf-") as cache:
        ds = Dataset.from_generator(
            _rows, gen_kwargs={"out": str(run.out.resolve())}, features=hf_features(), cache_dir=cache
        )
        ds.save_to_disk(str(to))
        summary.rows["train"] = len(ds)
    # The data files only: save_to_disk also writes dataset_info.json and state.json beside them.
    summary.files = sorted(to.glob("*.arrow"))
    return summary
