"""pair_ingest: the pairs recipe's source stage — edit pairs (source, edited target, instruction) →
samples.

Plans units from any pair reader (:mod:`groundedit.formats.pairs`, the kind named by ``--input-kind``
or guessed). Per pair it reads both images' headers and checks each file is whole, as ingest does
for photos; images embedded in a table are copied into the unit's artifact tar first (read once
per unit, row group by row group). The source gets ingest's downscaling (``max_side``); the target is
decoded to the source's frame by every later stage (:func:`groundedit.image.pixels.target_image`).
A target of another size is accepted when it is a pure rescale (the same aspect ratio, to a pixel),
which that decode undoes; any other size is ``size_mismatch``. Unusable pairs are rejected with the
reader's reason (``bad_manifest_line``, ``image_missing``, ``no_instruction``, ...) or an image's.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from groundedit.formats.listing import TarListings
from groundedit.formats.pairs import cell_bytes, guess_kind, iter_pair_groups, read_cells
from groundedit.formats.scan import KeyIndex, PlannedUnit, chunk_units
from groundedit.formats.tar import BlobChanged, blob_digest, read_blob
from groundedit.image.codec import (
    SampleError,
    check_complete,
    exif_orientation,
    fit_within,
    open_image,
    oriented_size,
)
from groundedit.records import BlobRef, Instructions, Pair, Sample, Source, SourceEntry
from groundedit.stages.base import UnitIO
from groundedit.stages.ingest import IngestParams, IngestStage


def is_rescale(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Whether size ``b`` is ``a`` scaled (aspect ratio kept to within a pixel's rounding)."""
    (aw, ah), (bw, bh) = a, b
    if (aw, ah) == (bw, bh):
        return True
    return abs(bw * ah / aw - bh) <= 1.0 and abs(bh * aw / ah - bw) <= 1.0


class PairIngestStage(IngestStage):
    name = "pair_ingest"
    Params = IngestParams
    writes = ("key", "source", "instructions", "pair")

    def input_kind(self) -> str:
        return self.config.input_kind or guess_kind(self.config.input)

    def plan(self, keys: KeyIndex, listings: TarListings | None = None) -> Iterator[PlannedUnit]:
        """Pair inputs are manifests and tables, not photo tars: ``listings`` is not used (their
        files get planning's stat cache, as loose photos do)."""
        groups = iter_pair_groups(
            self.config.input, self.input_kind(), self.config.columns, exclude=self.config.out
        )
        for unit, entries in chunk_units(groups, self.params.unit_size, self.config.limit, keys):
            yield PlannedUnit(unit, len(entries), loaded=entries)

    def reject_entry(self, entry: SourceEntry, reason: str, detail: str) -> Sample:
        s = super().reject_entry(entry, reason, detail)
        if entry.pair is None:
            return s
        pair = Pair(
            kind=entry.pair.kind, origin=entry.pair.origin, target=entry.pair.target, target_size=(0, 0)
        )
        return s.model_copy(update={"pair": pair})

    def process_batch(self, batch: list[SourceEntry], io: UnitIO) -> list[Sample]:
        cells = [
            c
            for e in batch
            if e.error is None and e.pair is not None
            for c in (e.pair.source_cell, e.pair.target_cell)
            if c
        ]
        values = {}
        if cells:
            values = read_cells(cells)
        out = []
        for entry in batch:
            if entry.error:
                out.append(self.reject_entry(entry, entry.error, entry.error_detail))
                continue
            try:
                out.append(self._read_pair(entry, values, io))
            except SampleError as e:
                out.append(self.reject_entry(entry, e.reason, e.detail))
        return out

    def _bytes(
        self, entry: SourceEntry, values: dict, io: UnitIO
    ) -> tuple[tuple[bytes, BlobRef], tuple[bytes, BlobRef]]:
        """Both images' bytes with references every later stage can read (absolute paths)."""
        p = entry.pair
        if p.source_cell is None:
            try:
                src, tgt = read_blob(entry.image), read_blob(p.target)
            except FileNotFoundError as e:
                raise SampleError("image_missing", str(e)) from e
            except BlobChanged:
                raise
            return (src, _with_digest(entry.image, src)), (tgt, _with_digest(p.target, tgt))
        found = []
        for role, cell in (("source", p.source_cell), ("target", p.target_cell)):
            try:
                data = cell_bytes(values[cell], cell.path)
            except (ValueError, OSError) as e:
                raise SampleError("image_missing", f"{p.origin}: {role} image: {e}") from e
            ref = io.artifacts.add(f"{entry.key}.{role}", data)
            found.append((data, ref.model_copy(update={"path": str(Path(io.out) / ref.path)})))
        return found[0], found[1]

    def _read_pair(self, entry: SourceEntry, values: dict, io: UnitIO) -> Sample:
        p = entry.pair
        if p.kind == "bagel-parquet" and values.get(p.target_cell) is None:
            raise SampleError(
                "bagel_row_invalid", f"{p.origin}: image_list has no image {p.target_cell.item}"
            )
        (src, src_ref), (tgt, tgt_ref) = self._bytes(entry, values, io)
        size, orientation, shown = self._header(src, "source")
        tgt_shown = self._header(tgt, "target")[2]
        if not is_rescale(shown, tgt_shown):
            raise SampleError(
                "size_mismatch",
                f"source {shown[0]}x{shown[1]}, target {tgt_shown[0]}x{tgt_shown[1]}: not a rescale of it",
            )
        source = Source(
            dataset="pairs",
            image_id=entry.key,
            file_name=entry.file_name,
            width=size[0],
            height=size[1],
            original_size=shown if shown != size else None,
            orientation=orientation,
            image=src_ref,
        )
        pair = Pair(
            kind=p.kind,
            origin=p.origin,
            target=tgt_ref,
            target_size=tgt_shown,
            rescaled=tgt_shown != shown,
        )
        return Sample(
            key=entry.key,
            source=source,
            instructions=Instructions(original=p.instruction),
            pair=pair,
            provenance=[self.provenance()],
        )

    def _header(self, data: bytes, role: str) -> tuple[tuple[int, int], int, tuple[int, int]]:
        """``(size every stage decodes to, EXIF orientation, the file's oriented size)``."""
        try:
            im = open_image(data, self.params.max_pixels)
            orientation, shown = exif_orientation(im), oriented_size(im)
            size = fit_within(shown, self.params.max_side)
            if min(size) < self.params.min_side:
                raise SampleError("image_too_small", f"{size[0]}x{size[1]} < {self.params.min_side} px")
            check_complete(data, im)
        except SampleError as e:
            raise SampleError(e.reason, f"{role}: {e.detail}") from e
        return size, orientation, shown


def _with_digest(ref: BlobRef, data: bytes) -> BlobRef:
    return ref if ref.digest is not None else ref.model_copy(update={"digest": blob_digest(data)})
