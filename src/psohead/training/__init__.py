"""GAN training: datasets, losses, the training loop (single process or DDP), snapshots,
FK-Enhance back-view builder and FAGE fine-tuning.

Submodules are imported explicitly (``from psohead.training.dataset import HeadDataset``) so
that reading a dataset does not pull in the networks.
"""
