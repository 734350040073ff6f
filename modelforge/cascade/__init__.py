"""The cascade: a small model answers, a large one only where the small one is unsure (one ONNX graph)."""
