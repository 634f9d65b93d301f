"""UniAnimate's 3-D UNet in pure PyTorch (see unet.py for the data flow)."""
from model.config import UNetConfig
from model.unet.temporal import TemporalBlock, make_temporal_block
from model.unet.unet import UniAnimateUNet

__all__ = ["TemporalBlock", "UNetConfig", "UniAnimateUNet", "make_temporal_block"]
