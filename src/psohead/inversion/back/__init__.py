"""Pseudo back labels: what stage 2 is shown for the side of the head the photo never saw.

Strategies (``--back``; the official code leaves the back image to the user):

* ``none``  - front only: plain PTI.
* ``prior`` - the stage-1 latent rendered at the back camera (and optionally at +-N degrees
  around it) before tuning, so that tuning the weights cannot wreck the unseen side; optionally in
  the hair colour the photo shows, averaged over several stage-1 latents and with its mirror
  image, and blended towards the mean latent's back (:mod:`.prior`).
* ``fk``    - the FK-Enhance back image whose silhouette best matches the expected back silhouette,
  recoloured to the photo's hair colour; stage 2 also gets the prior views (:mod:`.fk`).
* a path    - a real photo of the back of the same head, placed by its mask onto the expected back
  silhouette (:mod:`.photo`).
* ``auto``  - ``prior`` (with or without an FK-Enhance bank: fk's result swings with the image it
  retrieves; BENCHMARKS.md).

Photo and FK targets are compared on their foreground only (their background is not the
generator's) and supervise both stages, like the official back target; the prior exists only
after stage 1 and supervises stage 2. Back cameras are the front camera turned by pi
(:func:`psohead.camera.back_label`) and get no camera offset, as in the official projector.
"""
from .plan import STRATEGIES, BackPlan, known_back_views, plan_back
from .prior import back_cameras, prior_targets, render_prior

__all__ = ["STRATEGIES", "BackPlan", "back_cameras", "known_back_views", "plan_back", "prior_targets",
           "render_prior"]
