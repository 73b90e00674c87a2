"""posekit: train human pose estimation models and person detectors on COCO-format data."""

__version__ = "0.1.0"
