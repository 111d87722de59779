"""LeNet-style convolutional network trained with hand-written backpropagation.

The pieces, in the order data flows through them (docs/design.md §5):

- :mod:`convnet.layers`: ``Conv2D``, ``MaxPool2D``, ``AvgPool2D``, ``Subsample2D``,
  ``Pad2D``, ``ReLU``, ``Tanh``, ``ScaledTanh``, ``Sigmoid``, ``Flatten``, ``Linear``,
  ``Dropout``: each layer's configuration and its pure ``forward(params, x) -> (out,
  cache)`` and ``backward(params, cache, dout) -> (dx, grads)``, the plain reference maths;
- :mod:`convnet.fast_layers`: ``FastConv2D``, ``FastMaxPool2D``, ``FastReLU``, the same
  layers computed faster for LeNet-5's shapes (tested against the reference ones);
- :mod:`convnet.losses`: ``cross_entropy`` (mean softmax cross-entropy and its gradient);
- :mod:`convnet.model`: ``Sequential`` (parameters, chunks of a batch on threads) and
  ``lenet5``;
- :mod:`convnet.committee`: ``Committee``, networks whose probabilities are averaged;
- :mod:`convnet.optim`: ``SGD``, ``Adam``, ``StepLR``, ``CosineLR``;
- :mod:`convnet.gradcheck`: finite-difference gradient checking;
- :mod:`convnet.data`: IDX files, MNIST directories, downloads, the embedded digits;
- :mod:`convnet.train`, :mod:`convnet.checkpoint`, :mod:`convnet.cli`: training, saving and
  the ``convnet`` command;
- :mod:`convnet.inspect`: filters, feature maps, saliency, most-wrong digits and the
  confusion matrix, as arrays and as pictures (``convnet inspect``).
- :mod:`convnet.serve`: a local web page to draw a digit on and watch the network read it
  (``convnet serve``).
"""

from .committee import Committee
from .fast_layers import FastConv2D, FastMaxPool2D, FastReLU
from .gradcheck import check_gradients, numerical_gradient, relative_error
from .layers import (
    AvgPool2D,
    Conv2D,
    Dropout,
    Flatten,
    Layer,
    Linear,
    MaxPool2D,
    Pad2D,
    ReLU,
    ScaledTanh,
    Sigmoid,
    Subsample2D,
    Tanh,
    conv2d_reference,
)
from .losses import cross_entropy, log_softmax, softmax
from .model import Sequential, lenet5
from .optim import SGD, Adam, CosineLR, StepLR

__all__ = [
    "SGD",
    "Adam",
    "AvgPool2D",
    "Committee",
    "Conv2D",
    "CosineLR",
    "Dropout",
    "FastConv2D",
    "FastMaxPool2D",
    "FastReLU",
    "Flatten",
    "Layer",
    "Linear",
    "MaxPool2D",
    "Pad2D",
    "ReLU",
    "ScaledTanh",
    "Sequential",
    "Sigmoid",
    "StepLR",
    "Subsample2D",
    "Tanh",
    "check_gradients",
    "conv2d_reference",
    "cross_entropy",
    "lenet5",
    "log_softmax",
    "numerical_gradient",
    "relative_error",
    "softmax",
]
