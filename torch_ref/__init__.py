"""PyTorch reference implementation of vocalgenre."""
