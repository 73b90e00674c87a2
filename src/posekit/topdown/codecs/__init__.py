"""Keypoint codecs of the top-down family: encode training targets, decode predictions.

- :mod:`posekit.topdown.codecs.heatmap`: MSRA Gaussian heatmaps with UDP coordinate mapping and
  DARK sub-pixel decoding.
- :mod:`posekit.topdown.codecs.simcc`: SimCC 1-D classification labels (RTMPose).
- :mod:`posekit.topdown.codecs.flip`: flip test, mirroring outputs on the mirrored crop back.

Conventions as in :mod:`posekit.data.transforms`: coordinates are pixels with pixel
centres at integer coordinates (an image of width W spans x in [-0.5, W - 0.5) and its
mirror maps x to ``W - 1 - x``), sizes are (height, width), keypoints are (K, 3) x, y, v
with ``v > 0`` labelled. Every function is pure and leaves its inputs unchanged.
"""
