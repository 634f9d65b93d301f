"""Peak bytes of live tensors created inside a block: an allocator-independent memory measurement.

A dispatch mode sees every tensor an operator returns and follows each storage until the last
tensor using it is gone (CPython frees at once). Tensors that existed before (weights, inputs) are
not counted, so the peak is what the computation itself needed, on any device.
"""
from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class LiveBytes(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.users: dict[int, int] = {}  # storage address -> live tensors using it
        self.sizes: dict[int, int] = {}
        self.now = self.peak = 0
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        # a view of (or in-place result on) a tensor made before the block is not new memory
        given = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0]
                 if isinstance(t, torch.Tensor) and t.device.type != "meta"}
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor) and tensor.device.type != "meta":
                self._track(tensor, given)
        return out

    def _track(self, tensor: torch.Tensor, given: set[int]) -> None:
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if key == 0 or (key not in self.users and key in given):
            return
        if key not in self.users:
            self.users[key], self.sizes[key] = 0, storage.nbytes()
            self.now += storage.nbytes()
            self.peak = max(self.peak, self.now)
            self.largest = max(self.largest, storage.nbytes())
        self.users[key] += 1
        weakref.finalize(tensor, self._release, key)

    def _release(self, key: int) -> None:
        self.users[key] -= 1
        if self.users[key] == 0:
            del self.users[key]
            self.now -= self.sizes.pop(key)
