"""Exporters: a finished run's samples in other training formats (``groundedit export``).

Each exporter reads the run's shards through :class:`groundedit.formats.rundata.RunData` and writes one
format into a fresh folder: ``bagel-parquet`` (official Bagel's edit parquet, two layouts) and
``hf`` (a Hugging Face ``datasets`` folder with Image features).
"""

from __future__ import annotations

from groundedit.exporters.bagel import export_bagel_parquet
from groundedit.exporters.base import ExportError, ExportSummary, fresh_folder
from groundedit.exporters.hf import export_hf, hf_features

EXPORTERS = {"bagel-parquet": export_bagel_parquet, "hf": export_hf}

__all__ = [
    "EXPORTERS",
    "ExportError",
    "ExportSummary",
    "export_bagel_parquet",
    "export_hf",
    "fresh_folder",
    "hf_features",
]
