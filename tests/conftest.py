"""Shared test fixtures."""
import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Run a module's tests on one intra-op thread (tiny tensors: threads only add overhead, and stall badly
    on a shared 2-core machine); restores the previous setting afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


#: Test files that read the built book (``_build/html``). ``scripts/test.sh`` runs them (``-m built_book``) after
#: the book build, and everything else (``-m "not built_book"``) while the book builds.
BUILT_BOOK = {"test_book_browser.py", "test_api_reference.py"}


def pytest_collection_modifyitems(items):
    for item in items:
        if item.path.name in BUILT_BOOK:
            item.add_marker("built_book")
