import pytest

from tests.quality import night


@pytest.fixture(scope="session")
def built_night(tmp_path_factory):
    return night.build(tmp_path_factory.mktemp("night") / "work")


@pytest.fixture
def wd(built_night, tmp_path):
    return night.copy(built_night, tmp_path / "work")
