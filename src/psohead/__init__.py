"""psohead: one photo to a view-consistent 360-degree 3D head (PSO-HEAD on the PanoHead tri-grid GAN)."""
__version__ = "0.1.0"
