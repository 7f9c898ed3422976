"""Golden vectors (`qexport golden`): per-layer integer activations for checking firmware or RTL.

A golden vector is the exact integer array one stage of the model produces for given input
images, so an implementation can be compared layer by layer (README "Golden vectors").  Two
kinds, chosen by the network's graph: the integer reference pass of seed 002's LeNet graph, and
the XNOR/popcount data of binary conv/linear layers with binarized input (the binarized VGG and
ResNet18, or your module through --model-def).  Other graphs, plans without those layers and the
graph-less generic reader are refused.

Modules:
    stages    Stage / Inputs / Golden, the data built and written; a stage's memory-word encoding
    inputs    input images from image files, .npy / .npz arrays or --samples of the digits split
    lenet     the stages of LeNet's integer reference pass
    binary    run the float model with dequantized weights, capture each binary layer's input
    popcount  one binary layer's +-1 input, packed im2col patches, popcount, acc, thresholds
    header    golden.h: the stages as C arrays
    output    the npy / mem / cheader folder with manifest.json
    command   the click command and the library entry point `golden()`
"""

from .command import golden, golden_cmd, golden_vectors
from .inputs import load_inputs
from .output import write_golden
from .stages import Golden, Inputs, Stage

__all__ = ["Golden", "Inputs", "Stage", "golden", "golden_cmd", "golden_vectors", "load_inputs", "write_golden"]
