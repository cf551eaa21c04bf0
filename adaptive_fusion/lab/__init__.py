"""The lab: training the detector and the controller, evaluation, sweeps and the demo session.
It may import every other layer; nothing a robot runs imports it."""
