"""posekit: train human pose estimation models and person detectors on COCO-format data."""

import os

# OpenCV's own decoder limit (BMP, TIFF, WebP, GIF... are checked after their header is
# parsed by OpenCV only): the same 100 MP as posekit's JPEG/PNG header check, set before
# cv2 is first imported anywhere in posekit.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(100_000_000))

__version__ = "0.1.0"
