"""Fabric (Lightning's second API): your own training loop with devices, precision, processes, checkpoints and
loggers handled by fulgor's strategies. Not imported by `import fulgor` (loaded on first use of `fulgor.Fabric`)."""

from fulgor.fabric.fabric import Fabric
from fulgor.fabric.wrappers import _FabricDataLoader, _FabricModule, _FabricOptimizer, is_wrapped

__all__ = ["Fabric", "_FabricDataLoader", "_FabricModule", "_FabricOptimizer", "is_wrapped"]
