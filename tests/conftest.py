import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

from hypothesis import settings  # noqa: E402

settings.register_profile("project", deadline=None, max_examples=25, derandomize=True)
settings.load_profile("project")
