"""UniAnimate in pure PyTorch/numpy: UNet, VAE, CLIP, sampler, pose, pipeline.

Nothing in this package imports a web framework, a queue or a storage client.
"""
