"""Getting a demo's data file: download it (through a temporary sibling, so a failed download leaves nothing behind)
or, when that is impossible (no network), fail with an error that names the folder and how to put the file there."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.request import urlopen

__all__ = ["DatasetNotAvailableError", "download"]

TIMEOUT_S = 60


class DatasetNotAvailableError(RuntimeError):
    """A demo dataset is neither on disk nor downloadable."""


def download(url: str, destination: str | os.PathLike[str], how_to_place: str) -> None:
    """Save `url` as `destination` (its folder is created).

    Args:
        url: where the file is published.
        destination: the file to write.
        how_to_place: what the file must hold, for the error when the download fails.

    Raises:
        DatasetNotAvailableError: the download failed; the message names the folder and how to place the file.
    """
    path = Path(destination)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    try:
        with urlopen(url, timeout=TIMEOUT_S) as response, open(partial, "wb") as out:
            shutil.copyfileobj(response, out)
        os.replace(partial, path)
    except OSError as err:  # URLError, HTTPError and timeouts are OSErrors
        partial.unlink(missing_ok=True)
        raise DatasetNotAvailableError(
            f"Could not download {url} ({err}). Without network access, place the file in"
            f" {str(path.parent.resolve())!r} as {path.name!r}: {how_to_place}"
        ) from err
