"""Models as pure functions of their parameters: ``embed(params, X)`` and ``logits(params, X)``.

A classifier is ``logits(x) = g(x) W + b`` (docs/theory.md#objects): ``g`` is the *embedding*, the
post-activation output of the last hidden layer, and ``(W, b)`` is the linear head. Parameters are a plain
list, one entry per body layer, then the head ``(W (p, k), b (k,))`` last. For ``mlp`` every body entry is a
``(W, b)`` pair, so an MLP's parameters are a list of ``(W, b)`` with ``W`` of shape ``(fan_in, fan_out)``.

- ``mlp(sizes, n_classes)``: sizes = [D, h1, ..., p] (laptop scale; the default model);
- ``convnet(input_shape, n_classes)``: two conv-pool stages and a dense embedding (laptop scale);
- ``vgg("vgg11" | "vgg13", ...)`` and ``resnet18(...)``: the paper's networks (GPU scale), with a
  ``width`` multiplier so tests can build narrow ones. No batch normalization: VGG as originally published,
  ResNet-18 with SkipInit residual scales (see ``layers.Residual``), so every model is one pure function
  of its input with no train/eval modes.

Two routes compute the same functions: ``fused=True`` (the default of ``embed``, ``logits`` and ``loss``) runs
each layer's ``forward``, built from the fused primitives of ``minigcnc.fused`` (one autograd node per layer, the head
and the cross-entropy as one node, no jtp caches), the training fast path; ``fused=False`` runs each layer's
``apply``, one primitive per operation, the reference (and the route ``embed_with_cache`` and the
input-Jacobian engine take). Their values and parameter gradients agree to round-off (tests/test_models.py).
"""
import numpy as onp

from . import checks, ops
from .fused import linear_cross_entropy
from .backend import default_dtype, get_backend, to_device
from .layers import AvgPool, Conv, DenseAct, Flatten, MaxPool, Residual, Serial


class Model:
    """A body of layers producing the embedding (N, p) and a linear head producing logits (N, k).

    Attributes: ``name``, ``input_shape`` (without the batch axis), ``embed_dim`` (p), ``n_classes`` (k),
    ``layers`` (the body), ``input_dim`` (D = prod(input_shape), the size Jacobians are taken against).
    """

    def __init__(self, name, input_shape, layers, n_classes):
        if not isinstance(n_classes, (int, onp.integer)) or n_classes < 2:
            raise ValueError(f"n_classes must be an integer >= 2; got {n_classes!r}")
        self.name = name
        self.input_shape = tuple(int(s) for s in input_shape)
        self.layers = tuple(layers)
        self.body = Serial(*self.layers)
        self.n_classes = int(n_classes)
        out_shape, _ = self.body.init(onp.random.default_rng(0), self.input_shape, "float32")
        if len(out_shape) != 1:
            raise ValueError(f"{name}: the body must end in flat features (p,); it ends in {out_shape}")
        self.embed_dim = int(out_shape[0])
        self.input_dim = int(onp.prod(self.input_shape))

    def __repr__(self):
        return f"Model({self.name}, input {self.input_shape}, embed_dim {self.embed_dim}, classes {self.n_classes})"

    # ---- parameters ----
    def init(self, rng=0, dtype=None, backend=None):
        """Fresh parameters: list of per-layer params, then the head (W (p, k), b (k,)), on ``backend``.

        rng: a ``numpy.random.Generator`` or an int seed. Hidden layers are He-normal (relu) or
        LeCun-normal (tanh) with zero biases; the head is LeCun-normal with a zero bias.
        """
        rng = checks.as_rng(rng)
        backend = backend or get_backend()
        dtype = dtype or default_dtype(backend)
        _, body = self.body.init(rng, self.input_shape, dtype)
        p, k = self.embed_dim, self.n_classes
        head = ((rng.standard_normal((p, k)) / onp.sqrt(p)).astype(dtype), onp.zeros(k, dtype=dtype))
        return to_device(list(body) + [head], backend=backend)

    # ---- forward ----
    def check_input(self, X):
        """X reshaped to (N, *input_shape); accepts flat (N, D) or image-shaped inputs of the right size."""
        shape = tuple(getattr(X, "shape", ()))
        if len(shape) < 2:
            raise ValueError(f"{self.name}: X must be a batch (N, *{self.input_shape}); got shape {shape}")
        if shape[1:] == self.input_shape:
            return X
        if int(onp.prod(shape[1:])) == self.input_dim:
            return ops.reshape(X, (shape[0],) + self.input_shape)
        raise ValueError(
            f"{self.name}: X has shape {shape} but the model takes inputs of shape (N, *{self.input_shape}) "
            f"(or anything with {self.input_dim} values per sample); check the dataset or build the model "
            f"with input shape {shape[1:]}"
        )

    def embed_with_cache(self, params, X):
        """(Z (N, p), caches): the embedding and what the transpose-Jacobian products need."""
        return self.body.apply(params[:-1], self.check_input(X))

    def embed(self, params, X, fused=True):
        """The embedding g(X): post-activation features of the last hidden layer, (N, p).

        ``fused=False``: by the reference route (``apply`` of every layer; see the module docstring).
        """
        if not fused:
            return self.embed_with_cache(params, X)[0]
        return self.body.forward(params[:-1], self.check_input(X))

    def head(self, params, Z):
        """Logits from embeddings: Z W + b, (N, k)."""
        W, b = params[-1]
        return ops.linear(Z, W, b)

    def logits(self, params, X, fused=True):
        """logits(X) = g(X) W + b, (N, k)."""
        return self.head(params, self.embed(params, X, fused=fused))

    def loss(self, params, X, y, fused=True):
        """Mean cross-entropy of the logits against integer labels y.

        ``fused=True``: the training fast path (fused layers, the head and the loss as one primitive);
        ``fused=False``: the one-op-per-primitive reference. Same value and gradient to round-off.
        """
        if not fused:
            return ops.cross_entropy(self.logits(params, X, fused=False), y)
        W, b = params[-1]
        return linear_cross_entropy(self.embed(params, X), W, b, y)


# --------------------------------------------------------------------------------------------------
def mlp(sizes, n_classes, activation="relu"):
    """Multilayer perceptron: sizes = [D, h1, ..., p]; embedding = act(... act(x W1 + b1) ...), (N, p)."""
    sizes = list(sizes)
    if len(sizes) < 2 or any((not isinstance(s, (int, onp.integer))) or s < 1 for s in sizes):
        raise ValueError(f"mlp sizes must be [D, h1, ..., p] with positive integers and at least one hidden layer; got {sizes}")
    layers = [DenseAct(h, activation) for h in sizes[1:]]
    name = f"mlp{'-'.join(map(str, sizes))}"
    return Model(name, (sizes[0],), layers, n_classes)


def convnet(input_shape=(1, 28, 28), n_classes=10, channels=(16, 32), hidden=(128,), activation="relu"):
    """Small convnet: [conv3x3 - act - maxpool2] per channel count, flatten, dense hidden layers.

    The embedding is the last dense layer's activation, p = hidden[-1]. Fits 28x28 and 32x32 inputs.
    """
    layers = []
    for c in channels:
        layers += [Conv(c, 3, activation=activation), MaxPool(2)]
    layers += [Flatten()] + [DenseAct(h, activation) for h in hidden]
    return Model(f"convnet{'-'.join(map(str, channels))}", input_shape, layers, n_classes)


VGG_CONFIGS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
}


def vgg(name="vgg13", input_shape=(3, 32, 32), n_classes=10, width=1.0, hidden=512):
    """VGG-11/13 (Simonyan & Zisserman 2015) for small images, without batch normalization.

    3x3 convs with relu, 2x2 max-pools (skipped once the map is 1x1, so 28x28 MNIST fits), then flatten and
    one dense hidden layer of ``hidden * width`` units whose activation is the embedding. ``width``
    scales every channel count (tests use narrow nets).
    """
    if name not in VGG_CONFIGS:
        raise ValueError(f"vgg name must be one of {sorted(VGG_CONFIGS)}; got {name!r}")
    layers, size = [], min(input_shape[1:])
    for v in VGG_CONFIGS[name]:
        if v == "M":
            if size >= 2:
                layers.append(MaxPool(2))
                size //= 2
        else:
            layers.append(Conv(max(1, int(round(v * width))), 3))
    layers += [Flatten(), DenseAct(max(1, int(round(hidden * width))))]
    return Model(name if width == 1 else f"{name}x{width:g}", input_shape, layers, n_classes)


def _basic_block(channels, stride, in_channels):
    main = Serial(Conv(channels, 3, stride=stride, padding=1), Conv(channels, 3, padding=1, activation="identity"))
    shortcut = None
    if stride != 1 or in_channels != channels:
        shortcut = Serial(Conv(channels, 1, stride=stride, padding=0, activation="identity", init="lecun"))
    return Residual(main, shortcut)


def resnet18(input_shape=(3, 32, 32), n_classes=10, width=1.0):
    """ResNet-18 for small images (He et al. 2016, CIFAR stem: one 3x3 conv, no initial pooling).

    Four stages of two basic blocks (64, 128, 256, 512 channels times ``width``; stride 2 from the second
    stage, 1x1 projection shortcuts), SkipInit residual scales instead of batch normalization, global average
    pooling; the pooled features (p = 512 * width) are the embedding.
    """
    chans = [max(1, int(round(c * width))) for c in (64, 128, 256, 512)]
    layers, c_in = [Conv(chans[0], 3, padding=1)], chans[0]
    for i, c in enumerate(chans):
        for j in range(2):
            stride = 2 if (i > 0 and j == 0) else 1
            layers.append(_basic_block(c, stride, c_in))
            c_in = c
    layers += [AvgPool(None), Flatten()]
    return Model("resnet18" if width == 1 else f"resnet18x{width:g}", input_shape, layers, n_classes)


def build(kind, input_shape, n_classes, **kwargs):
    """A model by name: 'mlp' (kwargs sizes or hidden), 'convnet', 'vgg11', 'vgg13', 'resnet18'."""
    if kind == "mlp":
        hidden = list(kwargs.pop("hidden", (256, 256, 64)))
        return mlp([int(onp.prod(input_shape))] + hidden, n_classes, **kwargs)
    if kind == "convnet":
        return convnet(input_shape, n_classes, **kwargs)
    if kind in VGG_CONFIGS:
        return vgg(kind, input_shape, n_classes, **kwargs)
    if kind == "resnet18":
        return resnet18(input_shape, n_classes, **kwargs)
    raise ValueError(f"model must be one of 'mlp', 'convnet', 'vgg11', 'vgg13', 'resnet18'; got {kind!r}")


__all__ = ["Model", "mlp", "convnet", "vgg", "resnet18", "build"]


def forward_macs(model):
    """Multiply-adds of one example's forward pass through ``model``: ``{"dense": ..., "conv": ...}`` (ints).

    A dense layer counts ``fan_in x fan_out`` (the head included); a convolution counts its kernel's size
    (out x in x k x k) once per output position, as every kernel is applied at every position of its layer's
    output map (inside a residual block, the block's output map). Pools, activations and biases are not counted.
    """
    rng, shape = onp.random.default_rng(0), model.input_shape
    dense = conv = 0
    for layer in model.layers:
        shape, params = layer.init(rng, shape, "float32")
        positions = int(onp.prod(shape[1:])) if len(shape) == 3 else 1
        for a in _param_arrays(params):
            if a.ndim == 4:  # a convolution's kernel (out, in, k, k)
                conv += int(a.size) * positions
            elif a.ndim == 2:  # a dense layer's (fan_in, fan_out)
                dense += int(a.size)
    dense += model.embed_dim * model.n_classes  # the head
    return {"dense": dense, "conv": conv}


def _param_arrays(params):
    if hasattr(params, "ndim"):
        yield params
    elif isinstance(params, (list, tuple)):
        for p in params:
            yield from _param_arrays(p)
