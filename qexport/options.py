"""Click options defined once and reused by every export command (black / pip-tools style).

This module imports only click: it is on the `qexport --help` path.
"""

from __future__ import annotations

import re

import click

SCALE_SHIFT_RE = re.compile(r"^(?P<layer>[^=]+)=(?P<m>\d+),(?P<s>\d+)$")


def _parse_scale_shift(ctx, param, values):
    out = {}
    for value in values:
        match = SCALE_SHIFT_RE.match(value.strip())
        if not match:
            raise click.BadParameter(f"{value!r}: expected LAYER=m,s (e.g. c5=3,11)", ctx, param)
        out[match["layer"]] = (int(match["m"]), int(match["s"]))
    return out


LAYER_BITS_RE = re.compile(r"^(?P<glob>[^=]+)=(?P<bits>\d+)$")


def _parse_layer_bits(ctx, param, values):
    out = {}
    for value in values:
        match = LAYER_BITS_RE.match(value.strip())
        if not match or not 1 <= int(match["bits"]) <= 16:
            raise click.BadParameter(f"{value!r}: expected GLOB=N with N in 1..16 (e.g. conv1=8)", ctx, param)
        if out.get(match["glob"], int(match["bits"])) != int(match["bits"]):
            raise click.BadParameter(f"{match['glob']!r} is given two different bit widths", ctx, param)
        out[match["glob"]] = int(match["bits"])
    return out


MODEL_DEF_WARNING = ("qexport: --model-def runs code from {file} (your own module); the checkpoint itself is read "
                     "with weights_only=True and runs nothing")  # fmt: skip


def _warn_model_def(ctx, param, value):
    """Said once, when the option is parsed: the one way qexport runs code that is not its own."""
    if value:
        click.echo(MODEL_DEF_WARNING.format(file=value.split(".py:")[0] + ".py" if ".py:" in value else value), err=True)
    return value


def model_argument(f):
    return click.argument("model", required=False, type=click.Path(readable=False, path_type=str))(f)


PLAN_OPTIONS = (
    click.option("--arch", help="Force a reader (see `qexport formats`) instead of detecting the architecture."),
    click.option("--bits", type=click.IntRange(1, 16),
                 help="1 = binary, 2 = ternary, 3..16 = unsigned affine, for every layer the architecture "
                      "quantizes. Default (no --bits, no --plan): every tensor as trained (float32)."),
    click.option("--plan", "plan", type=click.Choice(["seed"]), default=None,
                 help="seed: the documented architecture's own plan (LeNet affine uint8, VGG binary, ...)."),
    click.option("--per-channel/--per-tensor", "per_channel", default=None,
                 help="One scale (alpha, threshold) per output channel, or one per tensor."),
    click.option("--alpha/--no-alpha", default=None, help="Binary: per-channel alpha = mean|W_c|."),
    click.option("--fold-bn/--no-fold-bn", "fold_bn", default=None,
                 help="Affine: fold BatchNorm into the conv before. Binary: BN+sign become integer thresholds."),
    click.option("--only", multiple=True, metavar="GLOB", help="Quantize only layers matching GLOB (repeatable)."),
    click.option("--keep-float", multiple=True, metavar="GLOB", help="Keep layers matching GLOB float (repeatable)."),
    click.option("--layer-bits", "layer_bits", multiple=True, metavar="GLOB=N", callback=_parse_layer_bits,
                 help="Quantize layers matching GLOB with N bits (1, 2, 3..16), whatever --bits/--plan give the "
                      "others; a mixed plan, e.g. --plan seed --layer-bits conv1=8 (repeatable)."),
    click.option("--mult-bits", type=click.IntRange(1, 31), default=16, show_default=True,
                 help="Width M of integer multipliers m in scale ~= m >> s (1 <= m < 2^M)."),
    click.option("--input-gain", type=click.IntRange(1, 1 << 24), default=256, show_default=True,
                 help="G: integer input codes x stand for x/G; biases are stored as round(b*G/S)."),
    click.option("--max-scale-error", type=click.FloatRange(0, 1), default=0.01, show_default=True,
                 help="Largest relative error allowed for an (m, s) pair; above it the export fails."),
    click.option("--zero-point", type=click.Choice(["round", "truncate"]), default="round", show_default=True,
                 help="truncate: reproduce seed 002's original quantize_tensor exactly."),
    click.option("--scale-shift", multiple=True, metavar="LAYER=m,s", callback=_parse_scale_shift,
                 help="Override the integer scale pair of one per-tensor layer (repeatable)."),
    click.option("--pack/--no-pack", default=None, help="Bit-pack binary/ternary weights (default: per format)."),
    click.option("--word-bits", type=click.Choice(["8", "16", "32", "64"]), default="32", show_default=True,
                 help="Word size of packed binary/ternary weights."),
    click.option("--layout", type=click.Choice(["oihw", "ohwi"]), default="oihw", show_default=True,
                 help="Weight layout: PyTorch's OIHW, or OHWI (CMSIS-NN, TFLite, LCE)."),
    click.option("--ternary-pack", type=click.Choice(["planes", "codes", "base3"]), default="planes",
                 show_default=True, help="Packed ternary: two bit-planes, 2-bit codes, or 5 trits per byte."),
    click.option("--report", type=click.Path(readable=False, path_type=str), metavar="FILE.json",
                 help="Write the quantization error report as JSON."),
    click.option("-v", "--verbose", is_flag=True, help="Print the error report table on stderr."),
    click.option("--model-def", "model_def", metavar="FILE.py:NAME[(k=v,...)]", callback=_warn_model_def,
                 help="The module that defines the network (a class, or a function returning an nn.Module): its "
                      "traced graph is the network, its layers are the layers.  RUNS THE CODE OF FILE.py; the "
                      "checkpoint must load into it exactly.  README \"The network graph\"."),
)  # fmt: skip

# The options PLAN_OPTIONS defines, by what they shape: the plan (PlanOptions), the encoding
# (qexport.encode.options.EncodeOptions), and how the command runs.
PLAN_OPTION_NAMES = ("bits", "plan", "per_channel", "alpha", "fold_bn", "only", "keep_float", "layer_bits",
                     "mult_bits", "input_gain", "max_scale_error", "zero_point", "scale_shift")  # fmt: skip
ENCODE_OPTION_NAMES = ("pack", "word_bits", "layout", "ternary_pack")
RUN_OPTION_NAMES = ("arch", "report", "verbose", "model_def")
SHARED_OPTION_NAMES = PLAN_OPTION_NAMES + ENCODE_OPTION_NAMES + RUN_OPTION_NAMES


CALIBRATION_OPTIONS = (
    click.option("--calibrate", "calibration_data", metavar="DATA",
                 help="Calibration images (.npy/.npz, image folder, CIFAR, MNIST; README \"Integer inference\")."),
    click.option("--calibration-samples", type=click.IntRange(1), default=256, show_default=True,
                 help="Calibrate on the first N images."),
    click.option("--percentile", type=float, default=None, metavar="P",
                 help="Calibrate each node to its P-th percentile range (e.g. 99.99) instead of min/max."),
    click.option("--mean", default=None, metavar="M[,M,M]", help="Normalisation mean per channel, 0..1 pixel scale."),
    click.option("--std", default=None, metavar="S[,S,S]", help="Normalisation std per channel, 0..1 pixel scale."),
)  # fmt: skip
CALIBRATION_OPTION_NAMES = ("calibration_data", "calibration_samples", "percentile", "mean", "std")


def calibration_options(f):
    for option in reversed(CALIBRATION_OPTIONS):
        f = option(f)
    return f


def plan_options(f):
    for option in reversed(PLAN_OPTIONS):
        f = option(f)
    return f


def output_option(help_text: str):
    return click.option("-o", "--output", type=click.Path(readable=False, path_type=str), help=help_text)
