"""PyTorch models: loading .pt2 programs (weights-only) and factory+weights, rebuilding real nn modules from an
exported graph (so pruning and training work on .pt2 input), and saving .pt2 programs.

Importing this package does not import torch; each function does, so the CLI stays light.
"""
