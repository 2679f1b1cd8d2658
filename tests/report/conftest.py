# The same sample-night fixtures as the quality tests.
from tests.quality.conftest import built_night, wd  # noqa: F401
