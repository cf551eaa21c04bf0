"""nuScenes through nuscenes-devkit: a nuScenes-layout dataroot read as frame sets (camera +
lidar), its splits as the trainer's frame cache, detections as a nuScenes submission scored by
the devkit's DetectionEval, and the synthetic world written in nuScenes' schema for the tests
and the reported numbers."""
