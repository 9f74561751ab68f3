"""Hugging Face ``datasets`` Features of the exported shards, derived from :class:`ExportRecord`.

Loading WebDataset shards without Features makes ``datasets`` guess the types from the first few
samples of the first shard, and a field that is null (or an empty list) in all of those gets the
``null`` type, which samples of another run cannot be cast to. Passing these Features fixes every
type up front::

    from datasets import load_dataset
    from groundedit.formats.features import shard_features

    ds = load_dataset("webdataset", data_files={"train": "runs/*/shards/*.tar"}, split="train",
                      features=shard_features())

The Features are derived from the pydantic record, so they cannot drift from what export writes.
``datasets`` is imported only when a function is called, to keep ``import groundedit`` light.

These are the types of the shards read as they are. ``groundedit export --format hf`` writes a
different, flattened table (a few top-level columns plus the record as JSON text); its schema is
:func:`groundedit.exporters.hf.hf_features`.
"""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel

from groundedit.records import ExportRecord

# The image members of a shard sample, as ``datasets`` names the columns.
IMAGE_COLUMNS = ("src.jpg", "grounded.jpg", "edited.jpg", "mask.png")

_SCALARS = {str: "string", int: "int64", float: "float64", bool: "bool"}


def record_features():
    """``datasets.Features`` of the exported JSON record (the ``json`` member of each sample), keyed
    by the JSON names (e.g. the CoT's ``1_Scene_Description``)."""
    import datasets

    return datasets.Features(_feature(ExportRecord))


def shard_features():
    """``datasets.Features`` of a row of ``load_dataset("webdataset", ...)`` over our shards: the
    sample key and shard path, the four images, and the record (:func:`record_features`)."""
    import datasets

    return datasets.Features(
        {
            "__key__": datasets.Value("string"),
            "__url__": datasets.Value("string"),
            **{name: datasets.Image() for name in IMAGE_COLUMNS},
            "json": dict(record_features()),
        }
    )


def _feature(tp: Any) -> Any:
    """The ``datasets`` feature of one Python type of the record (nullable types map to their
    non-null type: Arrow columns are nullable)."""
    import datasets

    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Annotated:
        return _feature(args[0])
    if origin in (Union, types.UnionType):
        non_null = [a for a in args if a is not type(None)]
        if len(non_null) != 1:
            raise TypeError(f"no single type for {tp}")
        return _feature(non_null[0])
    if origin is Literal:
        kinds = {type(a) for a in args}
        if len(kinds) != 1:
            raise TypeError(f"mixed literal {tp}")
        return datasets.Value(_SCALARS[kinds.pop()])
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return datasets.List(_feature(args[0]))
        if len({repr(a) for a in args}) != 1:
            raise TypeError(f"tuple of mixed types {tp}")
        return datasets.List(_feature(args[0]), length=len(args))
    if origin is list:
        return datasets.List(_feature(args[0]))
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return {(field.alias or name): _feature(field.annotation) for name, field in tp.model_fields.items()}
    if tp in _SCALARS:
        return datasets.Value(_SCALARS[tp])
    raise TypeError(f"{tp} has no fixed Arrow type (a free-form dict?): give the record a fixed shape")
