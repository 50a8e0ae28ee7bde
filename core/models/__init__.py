"""Architectures, ImageNet weights, the model registry and the model card's validation."""
