"""The types and errors every layer shares: frame sets and calibration, the lidar's beam model,
classes, modalities and corruption kinds, 3D boxes, budget errors.
Imports nothing else of the package."""
