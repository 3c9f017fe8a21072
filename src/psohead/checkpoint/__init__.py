"""Network files: our safetensors format and read-only import of official snapshot pickles."""
from .official_pickle import OfficialNetwork, OfficialSnapshot, read_official_pickle

__all__ = ["OfficialNetwork", "OfficialSnapshot", "read_official_pickle"]
