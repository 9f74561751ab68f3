"""The transformers backend on the tiny random checkpoints: constrained output always validates."""

from __future__ import annotations

import json
import pickle
import shutil

import pytest

from groundedit.models.chat import (
    EDIT_TYPES,
    Answer,
    ChatRequest,
    FailureReason,
    InstructionAnswer,
    QCAnswer,
    RewriteAnswer,
    SaliencyAnswer,
    Sampling,
    TransformersChatBackend,
    ask_validated,
    instruct_request,
    make_backend,
    qc_request,
    rewrite_request,
    saliency_request,
)
from groundedit.models.chat.hf_inputs import expand_image_pads

# Room for the worst case of the bounded grammars (every character a separate byte token).
INSTRUCT = Sampling(max_new_tokens=1200, temperature=1.0)
SHORT = Sampling(max_new_tokens=96, temperature=1.0)


def _byte_bound(backend, tokens: int) -> int:
    """Most bytes ``tokens`` generated tokens can decode to (a stray byte decodes to 3-byte U+FFFD)."""
    tokenizer = backend._loaded().tokenizer
    return tokens * max(len(tokenizer.decode([i]).encode()) for i in range(len(tokenizer)))


def _with_seeds(requests, first=0):
    return [r.with_seed(first + i) for i, r in enumerate(requests)]


def test_saliency_and_qc_replies_validate_on_the_first_try(vl_backend, templates, make_scene):
    saliency = [saliency_request(templates["saliency"], make_scene(shift=i), SHORT) for i in range(3)]
    qc = [
        qc_request(templates["qc"], make_scene(), make_scene(shift=i), "Make it red.", SHORT)
        for i in range(3)
    ]
    for requests, model in ((saliency, SaliencyAnswer), (qc, QCAnswer)):
        results = ask_validated(vl_backend, _with_seeds(requests), model, max_attempts=1)
        assert all(isinstance(r, Answer) for r in results), [r for r in results if not r.ok]
        assert {r.model_id for r in results} == {vl_backend.model_id}


def test_instruct_replies_validate_and_keep_the_requested_type(vl_backend, templates, scene):
    types = list(EDIT_TYPES[:4])
    requests = _with_seeds(
        [instruct_request(templates["instruct"], scene, t, INSTRUCT, max_chars=24) for t in types]
    )
    results = ask_validated(
        vl_backend, requests, InstructionAnswer, max_attempts=1, contexts=[{"edit_type": t} for t in types]
    )
    assert all(r.ok for r in results), [r for r in results if not r.ok]
    assert [r.value.editing_type for r in results] == types
    for r in results:
        assert len(r.value.editing_instruction) <= 24
        assert all(0 < len(step) <= 24 for step in r.value.cot.model_dump().values())


def test_rewrite_returns_one_non_empty_line(q3_backend, templates):
    instruction = "Change the color of the left car to blue."
    sampling = Sampling(max_new_tokens=200, temperature=1.0)  # 40 characters, up to 4 byte tokens each
    requests = _with_seeds(
        [rewrite_request(templates["rewrite"], instruction, sampling, max_chars=40)] * 3, first=10
    )
    replies = q3_backend.generate(requests)
    for reply in replies:
        assert reply.strip() and len(reply.splitlines()) == 1 and len(reply) <= 40
    assert all(r.ok for r in ask_validated(q3_backend, requests, RewriteAnswer, max_attempts=1))


def test_mixed_batches_are_chunked_and_each_row_keeps_its_constraint(vl_backend, templates, scene):
    requests = [
        saliency_request(templates["saliency"], scene, SHORT),
        qc_request(templates["qc"], scene, scene, "Remove the dog.", SHORT),
        ChatRequest(system="free", user="free", sampling=Sampling(max_new_tokens=5)),
        rewrite_request(templates["rewrite"], "Remove the dog.", SHORT, max_chars=20),
        saliency_request(templates["saliency"], scene, SHORT),
    ]
    assert vl_backend.batch_size < len(requests)
    replies = vl_backend.generate(requests)
    assert len(replies) == 5
    assert SaliencyAnswer.parse(replies[0]) and SaliencyAnswer.parse(replies[4])
    assert QCAnswer.parse(replies[1])
    assert RewriteAnswer.parse(replies[3])
    # The free row stops at its own cap although the batch runs longer.
    assert len(replies[2].encode()) <= _byte_bound(vl_backend, 5)


def test_same_seed_same_reply_and_seeds_matter(vl_backend, templates, scene):
    request = instruct_request(templates["instruct"], scene, "remove", INSTRUCT, max_chars=16)
    first = vl_backend.generate([request.with_seed(1), request.with_seed(2), request.with_seed(3)])
    again = vl_backend.generate([request.with_seed(1), request.with_seed(2), request.with_seed(3)])
    assert first == again
    assert len(set(first)) > 1


def test_greedy_ignores_the_seed_and_the_checkpoints_sampling_defaults(vl_backend, templates, scene):
    greedy = Sampling(max_new_tokens=96, temperature=0.0)
    request = qc_request(templates["qc"], scene, scene, "Remove the dog.", greedy)
    replies = vl_backend.generate([request.with_seed(1), request.with_seed(99)])
    assert replies[0] == replies[1]


def test_max_new_tokens_cuts_a_row_and_validation_reports_it(vl_backend, templates, scene):
    request = instruct_request(templates["instruct"], scene, "add", Sampling(max_new_tokens=6), max_chars=24)
    [result] = ask_validated(vl_backend, [request], InstructionAnswer, max_attempts=2)
    assert result.reason == FailureReason.INVALID_JSON and result.attempts == 2
    assert 0 < len(result.raw.encode()) <= _byte_bound(vl_backend, 6)


def test_model_kind_is_read_from_the_config(vl_backend, q3_backend, scene):
    assert vl_backend.is_vision and not q3_backend.is_vision
    with pytest.raises(ValueError, match="text-only"):
        q3_backend.generate([ChatRequest(system="s", user="u", images=[scene])])


def test_backend_is_cheap_to_build_and_pickles_without_its_model(vl_backend, tiny_vl_dir):
    fresh = make_backend("transformers", model=tiny_vl_dir, batch_size=2)
    assert isinstance(fresh, TransformersChatBackend)
    with pytest.raises(RuntimeError, match="setup"):
        fresh.generate([ChatRequest(system="s", user="u")])
    clone = pickle.loads(pickle.dumps(vl_backend))
    assert clone._state is None and clone.model_id == vl_backend.model_id
    assert len(pickle.dumps(vl_backend)) < 2000


def test_chat_template_shipped_beside_the_tokenizer_is_used(tiny_q3_dir, tmp_path):
    """Like Qwen2.5-VL repos, whose template lives in chat_template.json, not in the tokenizer config."""
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_q3_dir, model_dir)
    config = json.loads((model_dir / "tokenizer_config.json").read_text())
    template = config.pop("chat_template").replace("<|im_start|>", "<|im_start|>@")
    (model_dir / "tokenizer_config.json").write_text(json.dumps(config))
    (model_dir / "chat_template.json").write_text(json.dumps({"chat_template": template}))
    backend = TransformersChatBackend(model_dir)
    backend.setup()
    assert backend.render(ChatRequest(system="s", user="u")).startswith("<|im_start|>@system")


def test_image_placeholders_expand_to_the_patch_count():
    text = "a<|image_pad|>b<|image_pad|>c"
    assert expand_image_pads(text, [2, 3]) == "a" + "<|image_pad|>" * 2 + "b" + "<|image_pad|>" * 3 + "c"
    with pytest.raises(ValueError, match="image slots"):
        expand_image_pads(text, [1])
