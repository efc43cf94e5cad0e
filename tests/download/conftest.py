from __future__ import annotations

import pytest

from tests.conftest import SAMPLES


@pytest.fixture(scope="session")
def archive_files() -> dict[str, bytes]:
    from quantnb.testing.archive_server import sample_archive

    return sample_archive(SAMPLES)


@pytest.fixture
def archive(archive_files):
    from quantnb.testing import ArchiveServer

    with ArchiveServer(archive_files) as srv:
        yield srv
