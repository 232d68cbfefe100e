"""Helpers the tests share (not test modules): tiny datasets and recipes for training runs."""
