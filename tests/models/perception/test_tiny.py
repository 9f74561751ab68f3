"""The tiny profile: deterministic files in the official formats, reused from the cache, cheap import."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import torch

from groundedit.models.perception.tiny import bert_vocab, write_tiny_perception


def _digests(root) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_same_bytes_other_seed_other_weights(tiny_paths, tmp_path):
    root = tiny_paths["sam"].parent
    again = write_tiny_perception(tmp_path / "again", seed=0)
    assert _digests(root) == _digests(again["sam"].parent)
    other = write_tiny_perception(tmp_path / "other", seed=1)
    a = torch.load(tiny_paths["ram_checkpoint"], weights_only=True)["model"]
    b = torch.load(other["ram_checkpoint"], weights_only=True)["model"]
    assert a.keys() == b.keys()
    assert not torch.equal(a["fc.weight"], b["fc.weight"])


def test_cache_is_reused_for_the_same_seed(tiny_paths):
    before = {k: p.stat().st_mtime_ns for k, p in tiny_paths.items()}
    again = write_tiny_perception(tiny_paths["sam"].parent, seed=0)
    assert {k: p.stat().st_mtime_ns for k, p in again.items()} == before


def test_saved_in_official_formats(tiny_paths):
    checkpoint = torch.load(tiny_paths["ram_checkpoint"], weights_only=True)
    assert set(checkpoint) == {"model"}
    assert "visual_encoder.patch_embed.proj.weight" in checkpoint["model"]
    for name in ("grounding_dino", "sam"):
        files = {p.name for p in tiny_paths[name].iterdir()}
        assert {"config.json", "model.safetensors"} <= files
        assert files & {"preprocessor_config.json", "processor_config.json"}
    assert "tokenizer.json" in {p.name for p in tiny_paths["grounding_dino"].iterdir()}


def test_single_model_builders_follow_the_hub_contract(tmp_path, tiny_paths):
    """``builder(dest) -> path to load``, with the same bytes as the bundle for the same seed."""
    from groundedit.models.perception.tiny import (
        write_tiny_grounding_dino,
        write_tiny_ram_plus,
        write_tiny_sam,
    )

    checkpoint = write_tiny_ram_plus(tmp_path / "ram")
    assert checkpoint.read_bytes() == tiny_paths["ram_checkpoint"].read_bytes()
    assert _digests(write_tiny_grounding_dino(tmp_path / "dino")) == _digests(tiny_paths["grounding_dino"])
    assert _digests(write_tiny_sam(tmp_path / "sam")) == _digests(tiny_paths["sam"])


def test_vocabulary_puts_grounding_dino_delimiters_at_bert_ids():
    vocab = bert_vocab()
    assert (vocab["[CLS]"], vocab["[SEP]"], vocab["."], vocab["?"]) == (101, 102, 1012, 1029)
    assert len(bert_vocab(30522)) == 30522


def test_importing_the_package_does_not_import_torch():
    code = "import sys, groundedit.models.perception as p; p.GroundedObject; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_tiny_sam_image_embedding_depends_on_the_image():
    """A random SAM built with SamVisionConfig's 1e-10 init gives every image the same embedding
    (then every mask is the same whatever the photo); the tiny one must see its input."""
    from groundedit.models.perception import architectures
    from groundedit.models.perception.tiny import build_sam

    model = build_sam("tiny", seed=0)
    side = architectures.TINY_SAM_SIZE
    gen = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 1, 3, side, side, generator=gen)
    with torch.no_grad():
        ea, eb = model.get_image_embeddings(a), model.get_image_embeddings(b)
    assert ea.std() > 0.1
    assert (ea - eb).abs().mean() > 0.1 * ea.abs().mean()
