"""InterCoG reasoning edits on the tiny model: four artifacts, seeded, independent of the batch; progress
reported per phase, and shown by ``groundedit edit``."""

from __future__ import annotations

import numpy as np
import pytest

from groundedit.models.bagel import EditProgress, ReasoningEditor
from groundedit.models.bagel.progress import (
    DESCRIPTION,
    EDITED,
    FINISHED,
    GROUNDED,
    GROUNDING,
    BatchProgress,
)

from .test_bagel_inference import picture, pixels


def test_reasoning_edit_returns_four_artifacts(editor):
    reasoner = ReasoningEditor(editor, "Ground the target, then edit.")
    images = [picture(64, 48, 0), picture(40, 56, 1)]
    prompts = ["make the car on the left blue", "remove the second dog"]
    results = reasoner.edit(images, prompts, seed=5, steps=3, max_text_tokens=4)
    for r, im in zip(results, images, strict=True):
        assert isinstance(r.grounding, str) and isinstance(r.description, str)
        assert r.grounded.size == r.edited.size == im.size
    [alone] = reasoner.edit(images[1:], prompts[1:], seed=6, steps=3, max_text_tokens=4)
    assert alone.grounding == results[1].grounding and alone.description == results[1].description
    assert np.abs(pixels(alone.edited) - pixels(results[1].edited)).max() <= 1  # float summation order only
    with pytest.raises(ValueError, match="2 images but 1 instructions"):
        reasoner.edit(images, prompts[:1])


def _phases(events) -> list[tuple[int, str]]:
    """(batch start, phase) in the order they began."""
    seen: list[tuple[int, str]] = []
    for ev in events:
        if not seen or seen[-1] != (ev.first, ev.phase):
            seen.append((ev.first, ev.phase))
    return seen


def test_reasoning_edit_reports_every_phase_of_every_batch(editor):
    """The progress callback sees each phase of each batch, counting tokens and steps up to its total,
    and does not change the results."""
    reasoner = ReasoningEditor(editor, "Ground the target, then edit.")
    images = [picture(48, 40, 0), picture(40, 56, 1), picture(32, 32, 2)]
    prompts = ["make the car blue", "remove the dog", "add a bird"]
    events: list[EditProgress] = []
    results = reasoner.edit(
        images, prompts, seed=2, steps=4, max_text_tokens=5, batch_size=2, on_progress=events.append
    )
    phases = [GROUNDING, GROUNDED, DESCRIPTION, EDITED, FINISHED]
    assert _phases(events) == [(0, p) for p in phases] + [(2, p) for p in phases]
    for (first, phase), size in zip(_phases(events), [2] * 5 + [1] * 5, strict=True):
        run = [e for e in events if (e.first, e.phase) == (first, phase)]
        assert all(e.size == size and e.edits == 3 for e in run)
        if phase == FINISHED:
            assert [(e.done, e.total) for e in run] == [(size, size)]
            continue
        assert [e.done for e in run] == list(range(len(run))), "counts 0, 1, 2, ... in order"
        assert run[-1].done == run[-1].total, "a phase's last event closes it"
        cap = 5 if phase in (GROUNDING, DESCRIPTION) else 4 - 1  # 4 timesteps, 3 denoising steps
        assert run[0].total == cap and run[-1].done <= cap
        assert run[0].unit == ("tokens" if phase in (GROUNDING, DESCRIPTION) else "steps")
    quiet = reasoner.edit(images, prompts, seed=2, steps=4, max_text_tokens=5, batch_size=2)
    assert [r.grounding for r in quiet] == [r.grounding for r in results]
    assert all(
        np.array_equal(pixels(a.edited), pixels(b.edited)) for a, b in zip(quiet, results, strict=True)
    )


def test_a_text_phase_that_ends_before_its_cap_is_closed_where_it_stopped():
    events: list[EditProgress] = []
    progress = BatchProgress(events.append, first=0, size=1, edits=1)
    on_token = progress.phase(GROUNDING, 1000)
    for n in (1, 2, 3):
        on_token(n)
    progress.end()
    assert [(e.done, e.total) for e in events] == [(0, 1000), (1, 1000), (2, 1000), (3, 1000), (3, 3)]
    assert BatchProgress(None, 0, 1, 1).phase(GROUNDING, 10) is None, "no callback, no per-step calls"


def test_plain_edit_reports_its_denoising_steps(editor):
    events: list[EditProgress] = []
    editor.edit([picture(32, 32)], ["make it red"], steps=3, on_progress=events.append)
    assert [(e.phase, e.done, e.total) for e in events] == [
        (EDITED, 0, 2),
        (EDITED, 1, 2),
        (EDITED, 2, 2),
        (FINISHED, 1, 1),
    ]


def test_edit_command_shows_progress(tiny_dir, tmp_path, capsys):
    """``groundedit edit --reasoning`` draws its progress from the editor's events: the display ends on
    every edit finished and the last phase of the last batch complete (a non-terminal gets that final
    frame only)."""
    from groundedit.cli import main

    for i in range(2):
        picture(40, 32, i).save(tmp_path / f"p{i}.png")
    batch = tmp_path / "edits.jsonl"
    batch.write_text("".join(f'{{"image": "p{i}.png", "instruction": "make it blue"}}\n' for i in range(2)))
    args = ["edit", "--ckpt", str(tiny_dir), "--batch", str(batch), "--out", str(tmp_path / "out")]
    args += ["--reasoning", "--steps", "3", "--max-text-tokens", "4", "--batch-size", "1"]
    assert main(args) == 0
    err = capsys.readouterr().err
    lines = [" ".join(line.split()) for line in err.splitlines()]
    assert any(line.startswith("edits ") and "2/2" in line for line in lines), err
    assert any(line.startswith("batch 2/2: edited image") and "2/2 steps" in line for line in lines), err
    assert "wrote 2 edit(s)" in err
