"""The measurement of one loaded runner, in the worker: the session of repetitions, the
load generator that owns request timing, the resource sampler, environment metadata, and the
assembly of a cell's metrics from them."""
