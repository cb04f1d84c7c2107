"""The pruning core: dependency graph (the only user of Torch-Pruning), units, plans, engine."""
