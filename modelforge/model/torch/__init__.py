"""PyTorch models in the pipeline: loading .pt2 programs and factory+weights, rebuilding real nn modules from an
exported graph (so pruning and training work on .pt2 input), and exporting back to .pt2 and ONNX.

Importing this package does not import torch; each function does, so the CLI stays light.
"""
