"""Data helpers shared by the module and the loops (moving batches between devices)."""
