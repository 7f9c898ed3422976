"""Calibration and evaluation images for the integer network (issue 15), numpy only (no torch).

One entry point, `load_data(path, channels=None, size=None, limit=None) -> Dataset`, whatever the
input is; the format is found from the file's content or the folder's structure:

* `.npy` / `.npz` of uint8 pixels (see `qexport.data.arrays` for the accepted layouts);
* a folder of BMP/PNG images, labelled by class sub-folders, by `qexport cifar-bmp`'s flat
  `{label}_{index}.{ext}` names, or unlabelled;
* CIFAR-10/100 python pickles: one batch file, a `cifar-10-batches-py` / `cifar-100-python` folder
  or the official `.tar.gz` (a folder or archive gives its test split);
* MNIST idx files (`*-images-idx3-ubyte`, raw or `.gz`, labels from the matching
  `*-labels-idx1-ubyte` beside it when there is one).

Every problem is an `InputError` (a `UsageError` for bad arguments) with one line naming the file.
Nothing in a file is ever executed: arrays are read with `np.load(allow_pickle=False)` and CIFAR
pickles only through qexport.cifar's allow-listed unpickler.

Normalisation.  The float network was trained on `(pixel / 255 - mean) / std`, per channel, with
`mean` and `std` on the 0..1 pixel scale (`--mean 0.4914,0.4822,0.4465 --std 0.247,0.243,0.261`,
read by `parse_normalisation`).  The integer network takes the raw uint8 pixels that `load_data`
returns: the normalisation is to be folded into its first layer by the integer graph (not written
yet; nothing here folds anything).

Modules:
    dataset    `Dataset`, argument checks, the shape / label / limit checks shared by every format
    arrays     .npy / .npz
    folder     folders of BMP / PNG images
    cifar      CIFAR pickles, through qexport.cifar
    mnist      MNIST idx files
    normalise  `parse_normalisation`
    load       `load_data`: format detection
"""

from .dataset import Dataset
from .load import load_data
from .normalise import parse_normalisation

__all__ = ["Dataset", "load_data", "parse_normalisation"]
