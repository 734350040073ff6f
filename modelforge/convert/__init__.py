"""Turning a PyTorch or TensorFlow model into ONNX, the hub format, checked numerically on a runtime."""
