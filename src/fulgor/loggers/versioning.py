"""`VersionedLogger`: the `save_dir/name/version_N` folder the file-writing loggers (CSV, TensorBoard) put a run in,
with `N` chosen on first use as the next free number, by Lightning's rules. Local paths and fsspec URLs alike."""

from __future__ import annotations

import os

from fulgor import fs
from fulgor.loggers.logger import Logger

__all__ = ["VersionedLogger", "next_version"]


def next_version(root_dir: str) -> int:
    """The next free version number under ``root_dir``: one more than the largest ``version_<N>`` folder, else 0.

    Like Lightning, ``version_3`` and ``version_3_old`` both count as 3; files, ``version_x`` and a missing
    ``root_dir`` count as nothing.

    Args:
        root_dir: the folder holding the versions (a local path or a URL).
    """
    found = [-1]
    for entry in fs.listdir(root_dir):  # [] when root_dir does not exist
        number = entry.split("_")[1] if entry.startswith("version_") else ""
        if number.isdigit() and fs.isdir(fs.join(root_dir, entry)):
            found.append(int(number))
    return max(found) + 1


class VersionedLogger(Logger):
    """Base class of the loggers that write a run's files to ``save_dir/name/version`` (``CSVLogger``,
    ``TensorBoardLogger``): it owns ``name``, ``version``, ``save_dir``, ``root_dir`` and ``log_dir``.

    The version is chosen on first access of ``version`` (or ``log_dir``), so a logger built before an earlier run
    finished still gets a folder of its own. The strings are Lightning's: ``root_dir`` and ``log_dir`` are what
    ``os.path.join`` gives (``"/"`` for URLs), unexpanded unless ``expand_log_dir``. Files are read and written at
    :meth:`_on_disk` of those paths, where ``~`` is the home directory (as fsspec's local file system, which
    Lightning uses, reads it).

    Args:
        save_dir: the directory holding all experiments: a local path, or a URL (``memory://``, ``s3://``, ...) when
            fsspec is installed.
        name: the experiment name; ``None`` or ``""`` puts the versions directly in ``save_dir``.
        version: an int (folder ``version_<N>``), a string (used as the folder name), or ``None`` for
            :func:`next_version` of ``root_dir``.
        sub_dir: an extra folder level under the version folder (``save_dir/name/version_N/sub_dir``).
        expand_log_dir: expand ``$VARS`` and ``~`` in ``log_dir`` (TensorBoard's rule; the CSV logger's ``log_dir``
            is left as given).
    """

    def __init__(
        self,
        save_dir: str | os.PathLike[str],
        name: str | None,
        version: int | str | None,
        sub_dir: str | os.PathLike[str] | None = None,
        expand_log_dir: bool = False,
    ) -> None:
        super().__init__()
        self._save_dir = os.fspath(save_dir)
        self._name = name or ""
        self._version = version
        self._sub_dir = None if sub_dir is None else os.fspath(sub_dir)
        self._expand_log_dir = expand_log_dir

    @property
    def name(self) -> str:
        """The experiment name (``""`` when none)."""
        return self._name

    @property
    def version(self) -> int | str:
        """The experiment version; when not given, the next free number, chosen on first access."""
        if self._version is None:
            self._version = next_version(self._on_disk(self._versions_dir))
        return self._version

    @property
    def save_dir(self) -> str:
        """The directory holding all experiments."""
        return self._save_dir

    @property
    def root_dir(self) -> str:
        """``save_dir/name``: the directory holding every version of this experiment."""
        return self._versions_dir

    @property
    def _versions_dir(self) -> str:
        # `save_dir/name`, whatever `root_dir` means in a subclass (Fabric's loggers answer `save_dir` there).
        return fs.join(self.save_dir, self.name)

    @property
    def log_dir(self) -> str:
        """``save_dir/name/version_<N>`` (``save_dir/name/<version>`` for a string version), then ``/sub_dir`` if
        any."""
        version = self.version
        log_dir = fs.join(self._versions_dir, version if isinstance(version, str) else f"version_{version}")
        if self._sub_dir is not None:
            log_dir = fs.join(log_dir, self._sub_dir)
        if self._expand_log_dir:
            log_dir = os.path.expanduser(os.path.expandvars(log_dir))
        return log_dir

    def _on_disk(self, path: str) -> str:
        """Where the files of ``path`` (``root_dir``, ``log_dir``) really are: ``~`` expanded for local paths, and
        ``$VARS`` too when ``log_dir`` expands them, so versions are counted where they are written."""
        if fs.is_remote(path):
            return path
        if self._expand_log_dir:
            path = os.path.expandvars(path)
        return os.path.expanduser(path)
