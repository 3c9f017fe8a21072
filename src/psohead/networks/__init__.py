"""PanoHead networks: configs, tri-grid generator, discriminator and their building blocks."""
from .config import PRESETS, ConfigError, DiscriminatorConfig, GeneratorConfig
from .discriminator import MaskDualDiscriminatorV2
from .generator import TriGridGenerator
from .renderer import ImportanceRenderer, MipRayMarcher2, RaySampler
from .trigrid import OSGDecoder, sample_trigrid

__all__ = [
    "PRESETS", "ConfigError", "DiscriminatorConfig", "GeneratorConfig", "MaskDualDiscriminatorV2",
    "TriGridGenerator", "ImportanceRenderer", "MipRayMarcher2", "RaySampler", "OSGDecoder", "sample_trigrid",
]
