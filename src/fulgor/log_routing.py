"""Under the Lightning aliases, fulgor's log records go to the loggers Lightning's own would use, so the documented
idioms work unchanged: `logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)` silences the "GPU available"
lines, a handler added to `"pytorch_lightning.callbacks"` receives EarlyStopping's messages."""

from __future__ import annotations

import logging

from fulgor.rank import log

__all__ = ["LOGGERS", "lightning_logger_name", "route_to", "unroute"]


def lightning_logger_name(name: str, root: str) -> str:
    """The logger Lightning uses for what fulgor logs under `name`, in the package `root` ("pytorch_lightning" or
    "lightning.pytorch"); fulgor's main logger stands for Lightning's rank-zero helpers."""
    if name == log.name:
        return f"{root}.utilities.rank_zero"
    if name.startswith(_FABRIC_PARTS):  # parts Lightning keeps in its Fabric package
        root = _FABRIC_ROOT.get(root, root)
    return root + name[len(log.name) :]


_FABRIC_PARTS = ("fulgor.plugins.environments",)
_FABRIC_ROOT = {"pytorch_lightning": "lightning_fabric", "lightning.pytorch": "lightning.fabric"}


_saved: dict[str, tuple[int, list[logging.Handler]]] = {}


def route_to(root: str) -> None:
    """Send the records of fulgor's loggers to Lightning's loggers under `root` (idempotent: the first root imported
    stays). Each record takes one path: the Lightning logger of the same part decides (level, filters, handlers,
    its parents' included) and the fulgor logger drops it. The Lightning logger gets the level (INFO) and, when
    logging is not configured, the console handler that importing Lightning gives it."""
    if _saved:
        return
    lightning = logging.getLogger(root)
    lightning.setLevel(logging.INFO)  # as importing Lightning does
    if not logging.getLogger().handlers and not lightning.handlers:
        lightning.addHandler(logging.StreamHandler())
        lightning.propagate = False
    for name in (log.name, *LOGGERS):
        logger = logging.getLogger(name)
        _saved[name] = (logger.level, list(logger.handlers))
        for handler in list(logger.handlers):  # fulgor's console handler: Lightning's logger prints now
            logger.removeHandler(handler)
        logger.setLevel(logging.DEBUG)  # every record reaches the filter; the Lightning logger's level decides
        logger.addFilter(_ToLightning(lightning_logger_name(name, root)))


class _ToLightning(logging.Filter):
    """Hands a fulgor logger's record to the Lightning logger `target` (renamed to it) and drops it from the fulgor
    logger's own path."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target

    def filter(self, record: logging.LogRecord) -> bool:
        target = logging.getLogger(self.target)
        if target.isEnabledFor(record.levelno):
            record.name = self.target
            target.handle(record)
        return False


def unroute() -> None:
    """Undo `route_to` (the aliases were uninstalled)."""
    for name, (level, handlers) in _saved.items():
        logger = logging.getLogger(name)
        for routed in [f for f in logger.filters if isinstance(f, _ToLightning)]:
            logger.removeFilter(routed)
        logger.setLevel(level)
        for handler in handlers:
            logger.addHandler(handler)
    _saved.clear()


# Every logger a fulgor module creates besides `fulgor` (tests/compat/test_log_routing.py checks the list is whole);
# created here when routing starts, a module imported later gets the routed logger from its own `getLogger`.
LOGGERS = ("fulgor.callbacks.early_stopping", "fulgor.callbacks.finetuning", "fulgor.plugins.environments")
