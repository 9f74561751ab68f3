"""ask_validated at the protocol boundary: a scripted backend returns bad replies on purpose."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from groundedit.models.chat import (
    Answer,
    ChatBackend,
    ChatRequest,
    Failure,
    FailureReason,
    InstructionAnswer,
    QCAnswer,
    RewriteAnswer,
    SaliencyAnswer,
    ask_validated,
    attempt_seed,
)

GOOD_QC = '{"RegionEditAccuracy": 4.5, "SeamlessQuality": 3.8}'
COT = {
    "1_Scene_Description": "Two cars on a street.",
    "2_Target_Localization": "The left car, small and blue.",
    "3_Editing_Description": "Make it yellow.",
    "4_Post_Edit_Description": "The left car is yellow.",
}


class ScriptedBackend:
    """Replies with ``script(request, call_number)``; records every batch it was sent."""

    def __init__(self, script: Callable[[ChatRequest, int], str]):
        self.model_id = "scripted/model"
        self.script = script
        self.calls: list[list[ChatRequest]] = []

    def setup(self) -> None:
        pass

    def teardown(self) -> None:
        pass

    def generate(self, requests: list[ChatRequest]) -> list[str]:
        self.calls.append(list(requests))
        return [self.script(r, len(self.calls)) for r in requests]


def test_scripted_backend_satisfies_the_protocol():
    assert isinstance(ScriptedBackend(lambda r, n: ""), ChatBackend)


@pytest.mark.parametrize(
    ("model", "reply", "reason"),
    [
        (QCAnswer, '{"RegionEditAccuracy": 4.5, "SeamlessQuality": ', FailureReason.INVALID_JSON),
        (QCAnswer, "Scores: 4 and 3", FailureReason.INVALID_JSON),
        (QCAnswer, '{"accuracy": 4.5, "quality": 3.8}', FailureReason.WRONG_KEYS),
        (QCAnswer, '{"RegionEditAccuracy": 7.0, "SeamlessQuality": 3.8}', FailureReason.OUT_OF_RANGE),
        (SaliencyAnswer, '{"answer": "yes"}', FailureReason.INVALID_VALUE),
        (
            InstructionAnswer,
            json.dumps(
                {
                    "Editing_Type": "color change",
                    "Editing_Instruction": "Make the left car yellow.",
                    "CoT": {**COT, "2_Target_Localization": "The car inside the red box."},
                }
            ),
            FailureReason.MENTIONS_MARKING,
        ),
        (RewriteAnswer, "line one\nline two", FailureReason.NOT_ONE_LINE),
        (RewriteAnswer, "   ", FailureReason.EMPTY),
    ],
)
def test_invalid_replies_are_retried_with_new_seeds_then_fail(model, reply, reason, make_request):
    backend = ScriptedBackend(lambda r, n: reply)
    [result] = ask_validated(backend, [make_request(seed=11)], model, max_attempts=3)
    assert isinstance(result, Failure) and not result.ok
    assert result.reason == reason
    assert result.raw == reply and result.detail
    assert result.attempts == 3 and len(backend.calls) == 3
    seeds = [call[0].sampling.seed for call in backend.calls]
    assert result.seeds == seeds == [attempt_seed(11, a) for a in range(3)]
    assert seeds[0] == 11 and len(set(seeds)) == 3
    assert result.sampling["seed"] == seeds[-1] and result.model_id == "scripted/model"


def test_edit_type_mismatch_is_a_failure_reason(make_request):
    reply = json.dumps({"Editing_Type": "add", "Editing_Instruction": "Add a hat.", "CoT": COT})
    [result] = ask_validated(
        ScriptedBackend(lambda r, n: reply),
        [make_request()],
        InstructionAnswer,
        2,
        contexts=[{"edit_type": "remove"}],
    )
    assert result.reason == FailureReason.EDIT_TYPE_MISMATCH


def test_a_later_attempt_can_succeed(make_request):
    backend = ScriptedBackend(lambda r, n: "garbage" if n == 1 else GOOD_QC)
    [result] = ask_validated(backend, [make_request(seed=5)], QCAnswer, max_attempts=3)
    assert isinstance(result, Answer) and result.ok
    assert result.value.seamless_quality == 3.8 and result.raw == GOOD_QC
    assert result.attempts == 2 and result.seeds == [5, attempt_seed(5, 1)]
    assert result.sampling["seed"] == attempt_seed(5, 1)


def test_only_failed_requests_are_resent(make_request):
    bad = {1, 3}
    backend = ScriptedBackend(lambda r, n: "{" if r.user in {f"u{i}" for i in bad} and n == 1 else GOOD_QC)
    requests = [make_request(seed=i).model_copy(update={"user": f"u{i}"}) for i in range(4)]
    results = ask_validated(backend, requests, QCAnswer, max_attempts=3)
    assert [len(c) for c in backend.calls] == [4, 2]
    assert [c.user for c in backend.calls[1]] == ["u1", "u3"]
    assert all(r.ok for r in results)
    assert [r.attempts for r in results] == [1, 2, 1, 2]


def test_results_keep_provenance(make_request):
    request = make_request(seed=3).model_copy(update={"prompt_name": "qc", "prompt_sha256": "ab" * 32})
    [result] = ask_validated(ScriptedBackend(lambda r, n: GOOD_QC), [request], QCAnswer)
    assert (result.model_id, result.prompt_name, result.prompt_sha256) == ("scripted/model", "qc", "ab" * 32)
    assert result.sampling == request.sampling.model_dump()
    dumped = result.model_dump()
    assert dumped["value"] == {"RegionEditAccuracy": 4.5, "SeamlessQuality": 3.8}


def test_failure_records_the_last_reply(make_request):
    replies = iter(["{", '{"RegionEditAccuracy": 9, "SeamlessQuality": 1}'])
    [result] = ask_validated(ScriptedBackend(lambda r, n: next(replies)), [make_request()], QCAnswer, 2)
    assert result.reason == FailureReason.OUT_OF_RANGE and result.raw.startswith('{"RegionEditAccuracy": 9')


def test_backend_errors_propagate_and_bad_arguments_are_refused(make_request):
    def broken(r, n):
        raise RuntimeError("CUDA out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        ask_validated(ScriptedBackend(broken), [make_request()], QCAnswer)
    with pytest.raises(ValueError):
        ask_validated(ScriptedBackend(lambda r, n: GOOD_QC), [make_request()], QCAnswer, max_attempts=0)
    with pytest.raises(ValueError):
        ask_validated(ScriptedBackend(lambda r, n: GOOD_QC), [make_request()], QCAnswer, contexts=[{}, {}])


def test_a_backend_losing_replies_is_an_error(make_request):
    class Lossy(ScriptedBackend):
        def generate(self, requests):
            return super().generate(requests)[:-1]

    with pytest.raises(RuntimeError, match="replies"):
        ask_validated(Lossy(lambda r, n: GOOD_QC), [make_request(), make_request()], QCAnswer)


def test_attempt_seeds_are_reproducible_and_do_not_collide():
    assert attempt_seed(7, 0) == 7 and attempt_seed(7, 2) == attempt_seed(7, 2)
    retries = {attempt_seed(base, a) for base in range(200) for a in (1, 2)}
    assert len(retries) == 400 and all(0 <= s < 2**31 for s in retries)


def test_empty_batch(make_request):
    backend = ScriptedBackend(lambda r, n: GOOD_QC)
    assert ask_validated(backend, [], QCAnswer) == [] and backend.calls == []
