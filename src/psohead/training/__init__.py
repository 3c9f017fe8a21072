"""GAN training: losses, the training loop (single process or DDP), snapshots, FK-Enhance
back-view builder and FAGE fine-tuning. Datasets live in :mod:`psohead.io.dataset`.

Submodules are imported explicitly (``from psohead.training.loop import train``) so that
importing one part does not pull in the others.
"""
