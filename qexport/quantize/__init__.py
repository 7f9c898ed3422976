"""Quantization (README "Numerics"): pure, vectorised numpy functions, and the stage that applies a
plan to a model.

Modules:
    binary    sign binarization (+1 where w > 0, else -1) and per-channel alpha = mean|W_c|
    ternary   TWN ternarization: delta_c = 0.7 * mean|W_c|, strict |w| > delta_c, alpha over kept
    affine    unsigned affine quantization (bits 2..16), zero point "round" or seed 002's "truncate"
    intscale  float scale S -> integer pair (m, s) with S ~= m / 2**s
    bias      bias -> int32 in the integer forward pass's units (input gain G, S_eff = m / 2**s)
    bn        BatchNorm folding into conv/linear, and BN+sign -> integer thresholds for binary nets
    intops    int64 building blocks of seed 002's integer forward pass (conv, linear, requantize...)
    dequantize  the float32 value of quantized weights, defined once
    channels  per-channel parameters broadcast along axis 0
    metrics   SQNR and max abs error of the report
    scales    (m, s) pairs checked against --max-scale-error; the smallest usable affine scale
    plan      options + the architecture's default plan -> one LayerPlan per quantized layer
    handlers  one handler per scheme (affine, binary, ternary, passthrough), returning plain data
    pipeline  quantize_model: the handlers' results assembled into a QuantizedModel
    reference the integer LeNet forward pass (the specification the C test program matches)

Conventions shared by all modules: the output channel is axis 0 of a weight tensor; per-channel
parameters have shape (C,), per-tensor ones are 0-d arrays; inputs are float32 (float64 is
accepted and converted); non-finite inputs raise ValueError (the caller names the tensor).  No
torch import anywhere in this package.
"""
