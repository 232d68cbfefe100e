"""Shared data pipeline: audio decoding, separation, features, folds and the TFDS dataset builder."""
