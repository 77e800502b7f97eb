"""Torch-only core of :mod:`sis_attr`: masking, backward selection, FindSIS and result types.

Nothing in here imports Captum or matplotlib. The public doors are :mod:`sis_attr.functional` and the
Captum adapters; the names here are private and may change without notice.
"""
