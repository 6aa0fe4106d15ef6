"""Quantization-aware training: quantizers, AdaQAT, models, data, training.

Modules (torch is imported only by the modules that need it):

``config``       per-layer quantization spec (:class:`LayerQuant`), config files
``quantizers``   DoReFa / binary / power-of-two weights, PACT / sign activations
``models``       CIFAR-style quantized ResNet (ResNet-8, ResNet-20, ...)
``cost``         BitOPs (AdaQAT definition), weight memory, compression rate
``adaqat``       learned bit-widths by finite differences (AdaQAT eqs. 2-4)
``data``         8x8 digits, CIFAR-10 pickle batches, synthetic images
``checkpoint``   versioned checkpoint save / load
``train``        training loop and the Python API behind ``qhw train``
"""
