"""Backends run a model: onnxruntime (the default; later torch, tensorflow/tflite, tensorrt)."""
