import os

import pytest

# Keep the 2-core CI machine responsive when tests spawn subprocesses.
os.environ.setdefault('OMP_NUM_THREADS', '2')


def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: end-to-end checks (run in CI; skip locally with -m "not slow")')


@pytest.fixture
def repo_root():
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
