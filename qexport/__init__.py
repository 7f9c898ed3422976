"""qexport: get the parameters of a trained PyTorch network out, quantized exactly and verified.

Pipeline (see README "Design"): checkpoint -reader-> Model -plan-> QuantPlan -quantize->
QuantizedModel -encode-> EncodedModel -writer-> files.  This module stays import-light: `qexport --help` must not pull in
numpy or torch.
"""

__version__ = "0.1.0"
