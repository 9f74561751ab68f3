"""Model sizes for the perception models: ``full`` (the paper's checkpoints) and ``tiny`` (tests, CI).

``full`` repeats the published configurations so the benchmark can time the real architectures with
random weights: RAM++ Swin-L/384 with 4585 tags x 51 descriptions, Grounding DINO base (Swin-B/384
backbone, BERT-base text encoder, 900 queries, 6+6 layers) and SAM ViT-H (32 layers, width 1280,
1024 px). ``tiny`` keeps every code path (shifted windows, patch merging, multi-scale deformable
attention, two-way mask decoder) at a few thousand to a few hundred thousand parameters.
"""

from __future__ import annotations

from typing import Literal

from groundedit.models.perception.ram_plus import RamPlusConfig

Size = Literal["tiny", "full"]

# Processor sizes of the tiny profile; the full sizes are the processors' defaults (800/1333, 1024).
TINY_DINO_SIZE = {"shortest_edge": 96, "longest_edge": 128}
TINY_SAM_SIZE = 64
FULL_DINO_SIZE = {"shortest_edge": 800, "longest_edge": 1333}
FULL_SAM_SIZE = 1024


def ram_plus_config(size: Size, num_tags: int) -> RamPlusConfig:
    """RAM++ sizes; ``tiny`` keeps 384 px and window 12 so the official preprocessing is exercised."""
    if size == "full":
        return RamPlusConfig(num_tags=num_tags)
    return RamPlusConfig(
        num_tags=num_tags,
        embed_dim=16,
        depths=(2, 2, 2, 2),
        num_heads=(1, 2, 2, 4),
        descriptions_per_tag=3,
        text_width=16,
        head_hidden=32,
        head_heads=4,
        head_ffn=64,
    )


def grounding_dino_config(size: Size, vocab_size: int):
    """``GroundingDinoConfig`` with a Swin backbone and a BERT text encoder of the given vocabulary."""
    from transformers import BertConfig, GroundingDinoConfig, SwinConfig

    if size == "full":
        backbone = SwinConfig(
            image_size=384,
            embed_dim=128,
            depths=[2, 2, 18, 2],
            num_heads=[4, 8, 16, 32],
            window_size=12,
            out_indices=[2, 3, 4],
        )
        text = BertConfig(vocab_size=vocab_size)
        return GroundingDinoConfig(backbone_config=backbone, text_config=text)
    backbone = SwinConfig(
        image_size=96,
        embed_dim=16,
        depths=[1, 1, 2, 1],
        num_heads=[1, 2, 2, 4],
        window_size=4,
        out_indices=[2, 3, 4],
    )
    text = BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
    )
    return GroundingDinoConfig(
        backbone_config=backbone,
        text_config=text,
        d_model=32,
        encoder_layers=1,
        decoder_layers=2,  # transformers ties bbox heads across decoder layers and needs at least two
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_n_points=2,
        decoder_n_points=2,
        num_queries=40,
    )


def sam_config(size: Size):
    """``SamConfig``: ViT-H for ``full``; a 2-layer ViT on 64 px for ``tiny``."""
    from transformers import SamConfig

    if size == "full":
        vision = dict(
            hidden_size=1280,
            num_hidden_layers=32,
            num_attention_heads=16,
            global_attn_indexes=[7, 15, 23, 31],
        )
        return SamConfig(vision_config=vision)
    vision = dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=TINY_SAM_SIZE,
        patch_size=16,
        output_channels=16,
        window_size=2,
        global_attn_indexes=[1],
        mlp_dim=64,
        num_pos_feats=8,
        # SamVisionConfig's default (1e-10) suits weights that are always loaded; a random model
        # built with it has a near-zero encoder whose image embedding is the same for every image.
        initializer_range=0.02,
    )
    prompt = dict(hidden_size=16, image_size=TINY_SAM_SIZE, patch_size=16, mask_input_channels=4)
    decoder = dict(
        hidden_size=16, mlp_dim=32, num_hidden_layers=2, num_attention_heads=2, iou_head_hidden_dim=16
    )
    return SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)
