"""punmri: accelerated MRI reconstruction with pruned unrolled networks (PUN)."""

__version__ = "0.1.0"
