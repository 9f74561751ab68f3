"""The ES judge: schema-constrained requests, validated replies, garbage reported unscored."""

from __future__ import annotations

import numpy as np
import pytest

from groundedit.evaluation.judge import EditJudge, JudgeInput
from groundedit.models.chat import ChatRequest
from groundedit.specs import load_spec


class Scripted:
    """Replies from a list, in order, cycling; records every request."""

    model_id = "scripted"

    def __init__(self, replies):
        self.replies = list(replies)
        self.requests: list[ChatRequest] = []

    def setup(self):
        pass

    def generate(self, requests):
        out = []
        for r in requests:
            self.requests.append(r)
            out.append(self.replies[(len(self.requests) - 1) % len(self.replies)])
        return out


def item(i: int = 0) -> JudgeInput:
    rgb = np.zeros((40, 60, 3), np.uint8)
    return JudgeInput(f"item-{i}", rgb, rgb.copy(), (10, 10, 30, 30), "make the cup blue")


def judge_with(replies) -> tuple[EditJudge, Scripted]:
    backend = Scripted(replies)
    judge = EditJudge(load_spec("judge", "tiny"), seed=0, backend=backend)
    judge.setup()
    return judge, backend


def test_a_valid_reply_is_the_score():
    judge, backend = judge_with(['{"EditScore": 4}'])
    (v,) = judge.judge([item()])
    assert (v.score, v.attempts, v.reason) == (4, 1, None)
    req = backend.requests[0]
    assert len(req.images) == 2 and "make the cup blue" in req.user
    schema = req.constraint.json_schema
    assert schema["properties"]["EditScore"] == {"type": "integer", "minimum": 1, "maximum": 5}
    # the target's red box is drawn on both images
    assert np.asarray(req.images[0])[10, 20].tolist() != [0, 0, 0]


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("the edit looks great, 5/5", "invalid_json"),
        ('{"EditScore": 7}', "out_of_range"),
        ('{"Score": 3}', "wrong_keys"),
    ],
)
def test_garbage_is_retried_then_reported_unscored(reply, reason):
    judge, backend = judge_with([reply])
    (v,) = judge.judge([item()])
    assert v.score is None and v.reason.startswith(reason) and v.raw == reply
    assert v.attempts == judge.params.max_attempts == len(backend.requests)
    seeds = [r.sampling.seed for r in backend.requests]
    assert len(set(seeds)) == len(seeds), "each retry samples anew"


def test_a_retry_that_validates_scores():
    judge, _ = judge_with(["nonsense", '{"EditScore": 2}'])
    (v,) = judge.judge([item()])
    assert (v.score, v.attempts) == (2, 2)


@pytest.mark.slow
def test_the_tiny_judge_runs_through_the_transformers_backend():
    judge = EditJudge.load("tiny")
    judge.setup()
    try:
        verdicts = judge.judge([item(0), item(1)])
    finally:
        judge.teardown()
    assert all(v.score in {1, 2, 3, 4, 5} for v in verdicts), verdicts
