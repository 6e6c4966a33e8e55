"""Model files: the source a cell starts from, the content-addressed cache, and the
derivations into it (dequantize, quantize, GGUF to HF checkpoint), planned cheaply in the
parent and built only in a worker."""
