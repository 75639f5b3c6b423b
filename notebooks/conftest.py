"""nbval runs every notebook at its CI parameters, not its defaults.

The book build (``scripts/build_book.sh``) already executes every notebook on its defaults; running them again
under nbval would repeat that work. So each notebook collected by ``pytest notebooks --nbval-lax`` is first
parameterised with ``metadata["diffrep_lite"]["ci_parameters"]`` (papermill's injected-parameters cell, in
memory, nothing executed or written), and nbval's execution of it is the CI-sized run: every cell must run
without an error. The kernel still starts in ``notebooks/``, so relative paths resolve as in the book.
"""
from __future__ import annotations

from unittest import mock

import nbformat
import pytest
from nbval.plugin import IPyNbFile
from papermill.iorw import load_notebook_node
from papermill.parameterize import parameterize_notebook


def ci_parameters(nb) -> dict:
    """The CI parameters a notebook stores in its metadata (``{}`` if it has none)."""
    return dict(nb.metadata.get("diffrep_lite", {}).get("ci_parameters", {}))


class CIParameterisedNotebook(IPyNbFile):
    """nbval's notebook collector, reading the notebook with its CI parameters injected after the
    ``parameters`` cell (as papermill does) instead of the notebook as stored."""

    def collect(self):
        self.add_marker("notebooks")
        nb = load_notebook_node(str(self.path))  # as papermill reads it: every cell gets a tags list
        nb = parameterize_notebook(nb, ci_parameters(nb), kernel_name="python3", language="python")
        with mock.patch.object(nbformat, "read", return_value=nb):  # nbval reads the file with nbformat.read
            yield from super().collect()


@pytest.hookimpl(wrapper=True)
def pytest_collect_file(file_path, parent):
    collected = yield
    return [CIParameterisedNotebook.from_parent(parent, path=file_path) if type(c) is IPyNbFile else c
            for c in collected]
