"""Training DynMM's gate (policies/gate.py) over the frozen detector: the table of every path's
detection loss per training sample (table.py), the configuration (config.py) and the trainer."""
