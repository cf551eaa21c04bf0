"""The detector as a weight-sharing supernet (model/architecture.py), trained with sandwich
sampling: its configuration (config.py) and trainer (trainer.py)."""
