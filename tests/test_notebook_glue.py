"""diffrep_lite.notebook.glue stores what the book's {glue:text} role can format."""
import numpy as np
import pytest
import torch

from diffrep_lite import notebook


def test_glue_stores_python_numbers_for_numpy_and_torch_scalars(monkeypatch):
    stored = {}
    import myst_nb

    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display=True: stored.__setitem__(name, (value, display)))
    notebook.glue("a", np.float64(0.25))
    notebook.glue("b", torch.tensor(3))
    notebook.glue("c", "text")
    assert stored == {"a": (0.25, False), "b": (3, False), "c": ("text", False)}
    assert type(stored["a"][0]) is float and type(stored["b"][0]) is int
    with pytest.raises(ValueError, match="name must be"):
        notebook.glue("not a key", 1)
