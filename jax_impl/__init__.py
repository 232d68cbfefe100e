"""JAX/Flax NNX implementation of vocalgenre."""
