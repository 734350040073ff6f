"""One home per runtime (onnxruntime, OpenVINO, TFLite, TensorRT): open a session behind the Backend interface,
write its files, say what this machine offers; plus the pre-flight checks of a model on onnxruntime."""
