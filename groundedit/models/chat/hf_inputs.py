"""Model inputs for Qwen2-VL-family and text-only chat models under transformers, without a processor.

``Qwen2_5_VLProcessor`` cannot be built without torchvision (it insists on a video processor), so
we do its three jobs here with the tokenizer and the PIL image processor: render the chat template,
expand each image placeholder to as many ``<|image_pad|>`` tokens as the image has merged patches,
and mark those tokens in ``mm_token_type_ids`` (the model needs them for its 3-D rotary positions).
"""

from __future__ import annotations

from typing import Any

from PIL import Image

from groundedit.models.chat.request import ChatRequest

IMAGE_PAD = "<|image_pad|>"


def render_chat_text(tokenizer: Any, request: ChatRequest, chat_template: str | None = None) -> str:
    """The prompt text the model sees, ending with the assistant turn's opening.

    ``enable_thinking=False`` asks Qwen3 templates for a direct answer (no reasoning block); other
    templates ignore it.
    """
    messages = request.messages(lambda _image: {"type": "image"})
    return tokenizer.apply_chat_template(
        messages,
        chat_template=chat_template,
        add_generation_prompt=True,
        tokenize=False,
        enable_thinking=False,
    )


def expand_image_pads(text: str, tokens_per_image: list[int]) -> str:
    """Repeat the i-th ``<|image_pad|>`` of ``text`` ``tokens_per_image[i]`` times."""
    pieces = text.split(IMAGE_PAD)
    if len(pieces) - 1 != len(tokens_per_image):
        raise ValueError(f"prompt has {len(pieces) - 1} image slots for {len(tokens_per_image)} images")
    out = [pieces[0]]
    for count, piece in zip(tokens_per_image, pieces[1:], strict=True):
        out.append(IMAGE_PAD * count + piece)
    return "".join(out)


def build_inputs(
    tokenizer: Any,
    image_processor: Any | None,
    requests: list[ChatRequest],
    images: list[list[Image.Image]],
    pixel_bounds: tuple[int, int],
    chat_template: str | None = None,
) -> dict[str, Any]:
    """Left-padded ``input_ids``/``attention_mask`` plus, when there are images, ``pixel_values``,
    ``image_grid_thw`` and ``mm_token_type_ids``; ``images[i]`` are request i's prepared images."""
    flat = [im for row in images for im in row]
    texts = [render_chat_text(tokenizer, r, chat_template) for r in requests]
    vision: dict[str, Any] = {}
    if flat:
        if image_processor is None:
            raise ValueError("this model is text-only; the request has images")
        min_pixels, max_pixels = pixel_bounds
        vision = dict(
            image_processor(
                images=flat,
                size={"shortest_edge": min_pixels, "longest_edge": max_pixels},
                return_tensors="pt",
            )
        )
        merge = image_processor.merge_size**2
        counts = [int(n) // merge for n in vision["image_grid_thw"].prod(dim=-1).tolist()]
        start = 0
        for i, row in enumerate(images):
            texts[i] = expand_image_pads(texts[i], counts[start : start + len(row)])
            start += len(row)
    enc = tokenizer(texts, padding=True, return_tensors="pt", add_special_tokens=False)
    inputs: dict[str, Any] = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    if flat:
        pad_id = tokenizer.convert_tokens_to_ids(IMAGE_PAD)
        inputs["mm_token_type_ids"] = (enc["input_ids"] == pad_id).int()
        inputs["pixel_values"] = vision["pixel_values"]
        inputs["image_grid_thw"] = vision["image_grid_thw"]
    return inputs
