"""Regression tests from the review of issue 14's convnet pieces (bad input, classic variant)."""

import numpy as np
import pytest
from PIL import Image

from convnet import lenet5
from convnet.checkpoint import save_checkpoint
from convnet.cli import main
from convnet.preprocess import prepare_digit


@pytest.mark.parametrize("shape", [(1, 1), (1, 40), (40, 1)])
def test_an_image_with_a_side_of_one_pixel_is_called_too_small(tmp_path, capsys, shape):
    # review: a 1×1 picture was refused as "must be a 2-D grey image, got shape (1, 1)",
    # which it is; what is wrong is its size.
    model = save_checkpoint(tmp_path / "m.npz", lenet5(seed=0, variant="classic"))
    picture = np.full(shape, 255, np.uint8)
    picture.flat[len(picture.flat) // 2] = 0
    Image.fromarray(picture).save(tmp_path / "tiny.png")
    image = str(tmp_path / "tiny.png")
    for argv in (
        ["predict", str(model), image],
        ["inspect", str(model), image, "-o", str(tmp_path / "o")],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert f"{shape[0]}×{shape[1]} pixels, too small for a digit" in err
    assert not (tmp_path / "o").exists()
    with pytest.raises(ValueError, match="must be a 2-D grey image"):
        prepare_digit(np.zeros((3, 3, 3)))
