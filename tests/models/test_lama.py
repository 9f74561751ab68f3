from __future__ import annotations

import numpy as np
import pytest

from groundedit.models.lama import LamaInpainter, write_tiny_lama


@pytest.fixture(scope="module")
def lama(tmp_path_factory):
    return LamaInpainter.from_pretrained(write_tiny_lama(tmp_path_factory.mktemp("lama") / "big-lama.pt"))


@pytest.mark.parametrize(("h", "w"), [(37, 53), (64, 64), (9, 13), (1, 17)])
def test_output_size_equals_input_size(lama, h, w):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), bool)
    mask[h // 3 : h // 3 + max(1, h // 3), w // 4 : w // 2] = True
    out = lama.inpaint(rgb, mask)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert np.array_equal(out[~mask], rgb[~mask]), "pixels outside the mask are untouched"


def test_missing_checkpoint_says_how_to_get_it(tmp_path):
    from groundedit.models.hub import KNOWN_SOURCES

    with pytest.raises(FileNotFoundError, match="big-lama") as err:
        LamaInpainter.from_pretrained(tmp_path / "big-lama.pt")
    message = str(err.value)
    assert f"curl -L --create-dirs -o {tmp_path / 'big-lama.pt'} {KNOWN_SOURCES['big-lama.pt']}" in message
    assert "models.inpainter" in message and "models.lama" not in message
