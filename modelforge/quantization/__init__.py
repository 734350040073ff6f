"""INT8 quantization internals: graph preparation, streaming calibration and QDQ placement."""
