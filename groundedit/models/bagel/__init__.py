"""Lean Bagel-7B-MoT: our mixture-of-transformers implementation that loads the official checkpoint.

Editing (the edit stage, benchmarks)::

    from groundedit.models.bagel import BagelEditor

    editor = BagelEditor.from_pretrained("path/to/BAGEL-7B-MoT")  # or a hub id; CUDA + bf16 if present
    [out] = editor.edit([image], ["make the car blue"], seed=0)   # 50 steps, CFG text 4 / image 2

``edit`` takes lists: edits of different sizes run together (``batch_size`` per forward). A checkpoint
fine-tuned by ``groundedit train`` also edits with reasoning: ``ReasoningEditor(editor, system_prompt)``
writes the textual grounding, draws the grounded image, writes the editing description, then edits. Both take
``on_progress=``, called with an ``EditProgress`` per text token and denoising step of each phase. A folder in the
official layout holds ``llm_config.json``, ``vit_config.json``, ``ema.safetensors``, ``ae.safetensors`` and
the tokenizer; :func:`write_tiny_bagel` writes a tiny random one for tests and the ``tiny`` profile.

Training (one pass gives the losses, hidden states and ViT features)::

    lb = load_bagel(folder)                       # model, vae, tokenizer, tokens, config
    packer = SequencePacker(lb.config, lb.tokens)
    packer.add_text(system_ids)                   # no loss
    packer.add_vae_image(source)                  # clean conditioning image (PIL or [-1,1] tensor)
    packer.add_vit_image(source)
    packer.add_text(instruction_ids)
    think = packer.add_text(cot_ids, loss=True)   # CE on every token of the split
    grounded = packer.add_vae_image(grounded_img, noised=True)   # flow-matching target
    packer.end_sample()                           # ... more samples ...
    out = lb.model(packer.build().to(device), vae=lb.vae, hidden_layers={14, 28})
    loss = out.ce + out.mse
    h14 = out.hidden_states[14]                   # [T, hidden]; rows by span: h14[think.tokens]
    out.vit_features[k]                           # SigLIP tokens of the k-th ViT image
    out.velocity                                  # predicted v of the noised tokens (in span order)

``hidden_states[k]`` is the residual stream after k decoder layers (k = 0: input embeddings, k = L: before
the final norms); ``final_hidden`` is after the final norms. Noise and undrawn timesteps come from the
``generator`` argument; pass ``latents=`` instead of ``vae=`` to reuse encoded images.
``SequencePacker(..., vae_batching="padded")`` encodes a pack's VAE images zero-padded as one batch, as the
official trainer does (``per_image``, the default, encodes each alone; see ``Bagel.encode_images``).
The fine-tuning loop itself (sequences, grounding losses, checkpoints) is ``groundedit.train``.
"""

from .config import BagelConfig, LLMConfig, ResizeRule, VAEConfig, ViTConfig
from .context import Context, extend, generate_text
from .denoise import Guidance, denoise
from .inference import BagelEditor, EditResult
from .loading import CheckpointError, LoadedBagel, load_bagel, save_bagel
from .model import Bagel, BagelOutput
from .packing import PackedBatch, SequencePacker, Span, SpecialTokens
from .progress import EditProgress
from .reasoning import ReasoningEditor, ReasoningResult
from .tiny import tiny_config, write_tiny_bagel
from .vae import FluxVAE

__all__ = [
    "Bagel",
    "BagelConfig",
    "BagelEditor",
    "BagelOutput",
    "CheckpointError",
    "Context",
    "EditProgress",
    "EditResult",
    "FluxVAE",
    "Guidance",
    "LLMConfig",
    "LoadedBagel",
    "PackedBatch",
    "ReasoningEditor",
    "ReasoningResult",
    "ResizeRule",
    "SequencePacker",
    "Span",
    "SpecialTokens",
    "VAEConfig",
    "ViTConfig",
    "denoise",
    "extend",
    "generate_text",
    "load_bagel",
    "save_bagel",
    "tiny_config",
    "write_tiny_bagel",
]
