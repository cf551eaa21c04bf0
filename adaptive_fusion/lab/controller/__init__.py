"""Training the layer controller (policies/network.py) through the frozen detector:
`adaptive-fusion train-controller`.

- config: the YAML training configuration; data: training samples with quality and labels
- labels: corruption labels and their loss; usage: whether switching a live sensor off helps
- trainer: the training loop
"""
