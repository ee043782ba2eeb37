"""Namespace of the fast codec's classes (subclasses of ``stellar_sdk.xdr``'s), so that they pickle by name."""

from cdp_ray.xdr.fast.codec import CLASSES

globals().update(CLASSES)
__all__ = sorted(CLASSES)
