"""What a model is: the artifact with typed fields, ONNX helpers, format sniffing, opening a file (never unpickling),
and the PyTorch / TensorFlow loaders."""
