"""The marketplace tests' shared fixture: the committed configuration as raw YAML, to change before it is parsed."""

import pytest
import yaml

from dms_pipelines_tests.support import COMMITTED_CONFIG


@pytest.fixture
def raw() -> dict:
    return yaml.safe_load(COMMITTED_CONFIG.read_text())
