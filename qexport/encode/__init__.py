"""Encoding (README "Bit packing" and the writers' sections): everything between canonical codes
and bytes, shared by every writer and by golden vectors.  Nothing here quantizes.

Modules:
    options     EncodeOptions: --pack, --word-bits, --layout, --ternary-pack
    pack        layouts (oihw / ohwi), LSB-first bit packing of binary and ternary codes, popcount dots
    arrange     arrange(QuantizedModel, EncodeOptions) -> EncodedModel, what writers receive
    records     a layer's parameters and facts, one-line array descriptions, provenance lines
    jsonvalue   the one conversion of values to JSON
    files       unique file stems, .npy through Python, manifest JSON bytes
    c_literals  C literals of exact types and initializer grids (cheader, golden.h)
    memory      memory words and their .mem / .coe / .mif text (mem, golden)
"""
