"""Shared data pipeline: audio, separation, features, folds and the TFDS dataset builder."""
