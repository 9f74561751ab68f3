"""Token budgets: InterCoG sequences at the paper's resolution fit the paper profile's budget, and a data
stream whose samples never fit ends with one clear error instead of drawing forever."""

from __future__ import annotations

import random
import threading

import numpy as np
import pytest
from PIL import Image

from groundedit.models.bagel import BagelConfig
from groundedit.train.data import DataError, DataMixture
from groundedit.train.examples import EditExample, Grounding
from groundedit.train.sequence import SequenceBuilder
from groundedit.train.spec import load_train_spec
from groundedit.train.trainer import next_plans

from .conftest import grounding_example, no_dropout, sample_members, write_shard

# Reasoning text at the long end of what the instruct stage writes (~120 words across the four steps).
LONG_COT = (
    "A busy city street in the late afternoon: a row of parked cars along the curb, pedestrians on the "
    "sidewalk, a bus shelter, shop windows with awnings, two street lamps and tall trees casting shadows.",
    "the second parked car from the left, a small dark red hatchback directly below the nearer street lamp "
    "and partly behind the bus shelter, next to the white van",
    "recolor the body of the red hatchback to a deep glossy blue while keeping its windows, wheels, lights, "
    "reflections and shadows, and leave every other car and object unchanged.",
    "the street looks the same except that the second car from the left, under the nearer lamp, is now a "
    "deep glossy blue hatchback with the same reflections and shadows as before.",
)


def paper_example(size: tuple[int, int]) -> EditExample:
    w, h = size
    mask = np.zeros((h, w), bool)
    mask[h // 3 : h // 2, w // 4 : w // 2] = True
    src, grounded, edited = (Image.new("RGB", size, c) for c in ("gray", "red", "blue"))
    instruction = "Make the small car parked under the nearer street lamp, left of the white van, deep blue."
    return EditExample("paper", [src, edited], [instruction], Grounding(grounded, mask, LONG_COT))


@pytest.mark.parametrize(
    ("size", "image_tokens"),
    [
        ((1024, 768), 4 * (64 * 48 + 2) + 2 * (37 * 28 + 2)),  # VAE 1024x768, ViT 518x392
        ((1024, 1024), 4 * (64 * 64 + 2) + 2 * (37 * 37 + 2)),  # VAE 1024x1024, ViT 518x518
        ((2250, 1500), 4 * (64 * 43 + 2) + 2 * (37 * 25 + 2)),  # SA-1B: VAE 1024x688, ViT 518x350
    ],
)
def test_intercog_at_paper_resolution_fits_the_paper_budget(components, size, image_tokens):
    """The real sequence builder with the paper profile and Bagel-7B-MoT's geometry. The tokenizer is the
    tiny one (its small vocabulary spends more tokens on this text than Qwen2's would: an upper bound)."""
    spec = load_train_spec("paper")
    grounding, edit = spec.system_prompts()
    b = SequenceBuilder(components.bagel.tokenizer, BagelConfig(), spec.sequence, grounding, edit)
    plan = b.plan(paper_example(size), random.Random(0))
    assert plan.reasoning
    images = sum(op.full_tokens(b.config) for op in plan.ops if op.kind not in ("text", "cut"))
    assert images == image_tokens
    text = plan.full_tokens - images
    print(f"{size}: {plan.full_tokens} tokens ({images} image, {text} text)")
    assert 300 < text < 1500
    assert plan.full_tokens <= spec.max_tokens_per_sample <= spec.max_tokens_per_pack
    assert plan.full_tokens > 10240  # the plain-edit budget the issue found would skip every one of them


def draw_in_thread(fn, timeout: float = 120.0):
    """Run ``fn`` in a daemon thread; (result, error). A stream that loops forever fails the test here."""
    box: dict = {}

    def run():
        try:
            box["result"] = fn()
        except Exception as e:  # handed to the test
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "the data stream kept drawing without raising"
    return box.get("result"), box.get("error")


def test_a_stream_of_only_too_long_samples_stops_with_the_limit_and_the_length(components, tmp_path):
    shard = write_shard(tmp_path / "s.tar", {f"k{i}": sample_members(f"k{i}", seed=i) for i in range(3)})
    spec = load_train_spec("tiny", overrides=no_dropout(max_tokens_per_sample=40))
    data = DataMixture.from_args([str(shard)], max_skips_in_a_row=spec.max_skips_in_a_row)
    _, error = draw_in_thread(lambda: next_plans(data, components, spec))
    assert isinstance(error, DataError)
    message = str(error)
    assert "no usable sample in a whole pass" in message and "too_long 3" in message
    length = int(message.split("tokens > max_tokens_per_sample")[0].split()[-1])
    assert length > 40 and "max_tokens_per_sample 40" in message
    assert data.skipped == {"too_long": 3}


def test_a_long_run_of_skips_stops_the_run_and_a_fitting_sample_resets_the_count(components, tmp_path):
    samples = {f"k{i}": sample_members(f"k{i}", seed=i) for i in range(6)}
    spec = load_train_spec("tiny", overrides=no_dropout(max_tokens_per_sample=40))
    big = write_shard(tmp_path / "big" / "s.tar", samples)
    data = DataMixture.from_args([str(big)], max_skips_in_a_row=4)
    _, error = draw_in_thread(lambda: next_plans(data, components, spec))
    assert isinstance(error, DataError) and "4 samples in a row skipped (skipped: too_long 4" in str(error)

    # one small sample between long ones: the long ones are counted, the run goes on
    small = sample_members("small", size=(32, 32))
    mixed = write_shard(
        tmp_path / "mixed" / "s.tar", {"a": samples["k0"], "small": small, "b": samples["k1"]}
    )
    lengths = [
        components.builder.plan(grounding_example(size=size), random.Random(0)).full_tokens
        for size in ((32, 32), (64, 48))
    ]
    limit = sum(lengths) // 2
    assert lengths[0] <= limit < lengths[1]
    fits = load_train_spec("tiny", overrides=no_dropout(max_tokens_per_sample=limit))
    data = DataMixture.from_args([str(mixed)], max_skips_in_a_row=3)
    plans, error = draw_in_thread(lambda: next_plans(data, components, fits, 4))
    assert error is None and [p.key for p in plans] == ["small"] * 4
    # every pass reads a, small, b: a b a b a b a were skipped by the 4th small one, never 3 in a row
    assert all(p.full_tokens <= limit for p in plans) and data.skipped == {"too_long": 7}
