"""Network files: our safetensors format and read-only import of official snapshot pickles."""
from .official_pickle import OfficialNetwork, OfficialSnapshot, read_official_pickle
from .safetensors_io import NetworkFile, read_metadata, read_network, save_network, write_network

__all__ = ["NetworkFile", "OfficialNetwork", "OfficialSnapshot", "read_metadata", "read_network",
           "read_official_pickle", "save_network", "write_network"]
