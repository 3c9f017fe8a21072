"""Any photo -> PanoHead-aligned crop, camera label and foreground matte (spec section 7)."""
from .pipeline import AlignedFace, FaceTooSmallError, FaceTooSmallWarning, PreprocessWarning, align, align_all

__all__ = ["AlignedFace", "FaceTooSmallError", "FaceTooSmallWarning", "PreprocessWarning", "align", "align_all", "crop_files"]


def crop_files(*args, **kwargs):
    from .batch import crop_files as _crop_files

    return _crop_files(*args, **kwargs)
