"""Reading matting datasets in their real layouts, pairing, augmentation, compositing, synthetic data."""
