"""The bottom layer for files: the one image reader (:mod:`.images`), masks beside photos
(:mod:`.masks`) and labelled head datasets (:mod:`.dataset`, :mod:`.dataset_writer`)."""
