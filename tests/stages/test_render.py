"""render: the images a sample exports, and grounded.jpg as the bytes a full encode gives."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from groundedit.formats.runconfig import RunConfig
from groundedit.formats.storage import read_rows
from groundedit.formats.tar import ArtifactPack, read_blob
from groundedit.image import masks
from groundedit.image.codec import encode_jpeg
from groundedit.image.overlay import draw_grounding
from groundedit.image.pixels import source_image
from groundedit.records import Sample
from groundedit.specs import load_spec
from groundedit.stages import UnitIO
from groundedit.stages.render import RenderStage


def test_grounded_jpg_is_the_full_encode_of_the_grounding_image(tiny_run, tmp_path):
    samples = [
        s
        for p in sorted((tiny_run / "data" / "select").glob("*-?????.parquet"))
        for s in read_rows(p, Sample)
    ]
    samples = [s for s in samples if s.rejection is None][:4]
    assert samples
    stage = RenderStage(load_spec("render", "tiny"), RunConfig(out=tmp_path, input=tmp_path, profile="tiny"))
    pack = ArtifactPack(tmp_path, "render.tar")
    rendered = stage.process_batch(samples, UnitIO("u", tmp_path, pack))
    pack.commit()
    for s, r in zip(samples, rendered, strict=True):
        assert r.rejection is None
        image = np.array(source_image(s))
        mask = masks.decode(s.target.mask)
        want = encode_jpeg(draw_grounding(image, mask, s.target.box_xyxy), stage.params.jpeg_quality)
        got = read_blob(r.artifacts["grounded.jpg"], tmp_path)
        assert got == want
        assert read_blob(r.artifacts["src.jpg"], tmp_path) == encode_jpeg(image, stage.params.jpeg_quality)
        decoded = np.asarray(Image.open(io.BytesIO(got)))
        assert (decoded[mask][:, 0].astype(int) - image[mask][:, 0]).mean() > 20, "the mask is tinted red"
