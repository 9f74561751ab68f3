"""The VLM tasks (four pipeline stages and the eval judge) as request builders: prompt + images + fields -> :class:`ChatRequest`.

The caller draws the overlays (red mask for saliency, red box for instruct and qc) and passes the
finished images; these functions only fill the prompt, attach the images in the order the prompt
describes them, and attach the answer class's decoding constraint. Pair each with its answer
class in ``ask_validated``: ``TASK_ANSWERS`` says which.
"""

from __future__ import annotations

from PIL import Image

from groundedit.models.chat.answers import (
    EditScoreAnswer,
    InstructionAnswer,
    QCAnswer,
    ReasoningAnswer,
    RegionAnswer,
    RewriteAnswer,
    SaliencyAnswer,
)
from groundedit.models.chat.prompts import PromptTemplate
from groundedit.models.chat.request import ChatRequest, OutputConstraint, Sampling

# Longest free-text field we let a model write. An instruct reasoning step is two or three
# sentences; a paraphrase is one sentence. Saliency and qc answers have no free text.
INSTRUCT_MAX_CHARS = 600
REWRITE_MAX_CHARS = 300
NO_FREE_TEXT = 1

TASK_ANSWERS = {
    "saliency": SaliencyAnswer,
    "instruct": InstructionAnswer,
    "rewrite": RewriteAnswer,
    "qc": QCAnswer,
    "judge": EditScoreAnswer,
    "localize": RegionAnswer,
    "reason": ReasoningAnswer,
}


def _request(
    template: PromptTemplate,
    images: list[Image.Image],
    sampling: Sampling,
    constraint: OutputConstraint,
    **fields: str,
) -> ChatRequest:
    system, user = template.render(**fields)
    return ChatRequest(
        system=system,
        user=user,
        images=images,
        constraint=constraint,
        sampling=sampling,
        prompt_name=template.name,
        prompt_sha256=template.sha256,
    )


def saliency_request(template: PromptTemplate, masked_image: Image.Image, sampling: Sampling) -> ChatRequest:
    """Ask whether the target under the red mask is one well-segmented, non-obvious object."""
    return _request(template, [masked_image], sampling, SaliencyAnswer.constraint(NO_FREE_TEXT))


def instruct_request(
    template: PromptTemplate,
    boxed_image: Image.Image,
    edit_type: str,
    sampling: Sampling,
    max_chars: int = INSTRUCT_MAX_CHARS,
) -> ChatRequest:
    """Ask for an instruction of ``edit_type`` (one of ``EDIT_TYPES``) and its four-step reasoning.

    The decoding constraint pins ``Editing_Type`` to ``edit_type``; validate with
    ``contexts=[{"edit_type": edit_type}]`` too, for backends or replies that escape the constraint.
    """
    constraint = InstructionAnswer.constraint(max_chars, edit_type=edit_type)
    return _request(template, [boxed_image], sampling, constraint, edit_type=edit_type)


def rewrite_request(
    template: PromptTemplate, instruction: str, sampling: Sampling, max_chars: int = REWRITE_MAX_CHARS
) -> ChatRequest:
    """Ask for one paraphrase of ``instruction`` (text only)."""
    return _request(template, [], sampling, RewriteAnswer.constraint(max_chars), instruction=instruction)


def qc_request(
    template: PromptTemplate,
    original_boxed: Image.Image,
    edited_boxed: Image.Image,
    instruction: str,
    sampling: Sampling,
) -> ChatRequest:
    """Ask for the two 1.0-5.0 scores of an edit; the original image goes first, as the prompt says."""
    images = [original_boxed, edited_boxed]
    return _request(template, images, sampling, QCAnswer.constraint(NO_FREE_TEXT), instruction=instruction)


def judge_request(
    template: PromptTemplate,
    original_boxed: Image.Image,
    edited_boxed: Image.Image,
    instruction: str,
    sampling: Sampling,
) -> ChatRequest:
    """Ask ``groundedit eval``'s judge for the 1-5 editing score (ES); before-image first."""
    images = [original_boxed, edited_boxed]
    return _request(
        template, images, sampling, EditScoreAnswer.constraint(NO_FREE_TEXT), instruction=instruction
    )


def region_request(
    template: PromptTemplate, source: Image.Image, target: Image.Image, instruction: str, sampling: Sampling
) -> ChatRequest:
    """Ask where an edit pair's edit is (a box on the [0, 1000) grid) and what it does there; the
    source image goes first."""
    constraint = RegionAnswer.constraint(NO_FREE_TEXT)
    return _request(template, [source, target], sampling, constraint, instruction=instruction)


def reasoning_request(
    template: PromptTemplate,
    source_boxed: Image.Image,
    target_boxed: Image.Image,
    instruction: str,
    box_1000: tuple[tuple[int, int], tuple[int, int]],
    sampling: Sampling,
    max_chars: int = INSTRUCT_MAX_CHARS,
) -> ChatRequest:
    """Ask for the 4-step CoT and the GoT chain of a given edit (both images with the region's red
    box, source first); the decoding constraint makes the chain's target step write ``box_1000``.
    Validate with ``contexts=[{"box_1000": box_1000}]``."""
    from groundedit.models.chat.answers import box_text

    constraint = ReasoningAnswer.constraint(max_chars, box=box_1000)
    return _request(
        template,
        [source_boxed, target_boxed],
        sampling,
        constraint,
        instruction=instruction,
        box=box_text(box_1000),
    )
