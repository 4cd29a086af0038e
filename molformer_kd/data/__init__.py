"""Dataset loaders, splits, 3D conformers and metrics."""
