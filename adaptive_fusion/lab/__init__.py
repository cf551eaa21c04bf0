"""The lab: training the detector, the controller and the DynMM gate, evaluation, sweeps and the
demo session. It may import every other layer; nothing a robot runs imports it."""
