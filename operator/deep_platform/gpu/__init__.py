"""GPU awareness: the node agent (NVML), its per-node inventory and what the operator reads."""
