import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

from hypothesis import settings  # noqa: E402

settings.register_profile("project", deadline=None, max_examples=25, derandomize=True)
settings.load_profile("project")

#: the end-to-end files take minutes each (the quick reproduce, the bench, the notebook):
#: collected first, so that ``pytest -n auto --dist loadfile`` starts them first and the
#: short files fill the other workers (longest first keeps the workers' finishing times close).
LONG_FILES = ("test_reproduce.py", "test_bench.py", "test_notebook.py")


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: item.path.name not in LONG_FILES)  # stable: order kept otherwise
