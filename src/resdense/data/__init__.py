"""Data: whole data sets held in memory as uint8 tensors, and batched tensor transforms."""
