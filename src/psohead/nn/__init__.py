"""Pure-PyTorch building blocks (no compiled extensions; double backward works everywhere)."""
from .bias_act import ACTIVATIONS, activation_gain, bias_act
from .conv2d_resample import conv2d_resample
from .filters import filtered_resize, gaussian_blur, gaussian_kernel
from .layers import Conv2dLayer, FullyConnectedLayer, normalize_2nd_moment
from .modulated_conv import modulated_conv2d
from .upfirdn2d import downsample2d, filter2d, setup_filter, upfirdn2d, upsample2d

__all__ = [
    "ACTIVATIONS", "activation_gain", "bias_act", "conv2d_resample", "filtered_resize",
    "gaussian_blur", "gaussian_kernel", "Conv2dLayer", "FullyConnectedLayer",
    "normalize_2nd_moment", "modulated_conv2d", "downsample2d", "filter2d", "setup_filter",
    "upfirdn2d", "upsample2d",
]
