"""The fleet tests: Tidegate's processes run as operators run them (the `tidegate` and `celery`
command lines, Flower, private Redis servers with production settings) and the deploy/ files."""

from tests.fault.conftest import procs, pytest_runtest_makereport  # noqa: F401 (fixtures)
