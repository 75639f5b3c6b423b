"""Helpers for the book's notebooks.

:func:`glue` stores a value computed in a notebook under a name, so that the notebook's prose (and the book's
front page) can quote it with myst-nb's ``glue:text`` role (for example with the format ``.3f``): a number in the
text is then always the number the run printed. Outside a book build (Colab, plain Jupyter, papermill without
myst-nb) it does nothing.
"""
from __future__ import annotations

__all__ = ["glue"]

#: What this kernel has glued (name -> value): a table loop that meets the same figure in several rows glues it once,
#: since myst-nb warns on a repeated name (and the book build fails on warnings).
_GLUED: dict = {}


def glue(name: str, value, display: bool = False) -> None:
    """``myst_nb.glue(name, value, display)`` when myst-nb is installed, else nothing.

    Args:
        name: the key the book quotes (letters, digits and underscores).
        value: a number (numpy and torch scalars become Python numbers), a string or any displayable object (an ``IPython.display.HTML`` image for the gallery).
        display: also show the value in the cell's output (default False: the prose quotes it).

    A name glued again with an equal value is skipped; with another value it is glued again, and myst-nb's
    duplicate warning fails the book build (one name quotes one figure).
    """
    if not isinstance(name, str) or not name.replace("_", "").isalnum():
        raise ValueError(f"name must be letters, digits and underscores, got {name!r}")
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        value = value.item()  # numpy / torch scalars -> Python numbers, whose text the book can format ("0.25")
    try:
        from myst_nb import glue as _glue
    except ImportError:  # outside the book build there is nothing to paste into
        return
    if not display and name in _GLUED and _same(_GLUED[name], value):
        return
    _GLUED[name] = value
    _glue(name, value, display=display)


def _same(a, b) -> bool:
    try:
        return bool(type(a) is type(b) and a == b)
    except Exception:  # values whose == is not a truth value (arrays, tensors) are never taken for repeats
        return False
