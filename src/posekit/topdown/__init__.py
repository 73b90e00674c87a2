"""The top-down family: person boxes -> crops -> heatmaps or SimCC -> keypoints."""
