"""The part of Caffe's ``caffe.proto`` (BVLC/caffe, src/caffe/proto/caffe.proto) that pyconv
reads: field names and types per message, and the enums, so that a prototxt is checked as
protobuf would check it (unknown fields, wrong types, a non-repeated field given twice) and
every value arrives converted. Messages pyconv does not interpret (the parameters of layers it
does not support) are accepted as they are (``"M"``).

Types: ``s`` string, ``i`` int, ``u`` unsigned int, ``f`` float, ``b`` bool, ``E:Enum``,
``M:Message`` (checked), ``M`` (not checked); a trailing ``*`` marks a repeated field.
"""
import difflib
import math
import re

from .prototxt import Message, TextFormatError

ENUMS = {
    "Phase": {"TRAIN": 0, "TEST": 1},
    "DimCheckMode": {"STRICT": 0, "PERMISSIVE": 1},
    "VarianceNorm": {"FAN_IN": 0, "FAN_OUT": 1, "AVERAGE": 2},
    "Engine": {"DEFAULT": 0, "CAFFE": 1, "CUDNN": 2},
    "PoolMethod": {"MAX": 0, "AVE": 1, "STOCHASTIC": 2},
    "RoundMode": {"CEIL": 0, "FLOOR": 1},
    "NormRegion": {"ACROSS_CHANNELS": 0, "WITHIN_CHANNEL": 1},
    "EltwiseOp": {"PROD": 0, "SUM": 1, "MAX": 2},
    # V1LayerParameter.LayerType, with the V2 type name each becomes (Caffe's UpgradeV1LayerType)
    "V1LayerType": {
        "NONE": 0, "ABSVAL": 35, "ACCURACY": 1, "ARGMAX": 30, "BNLL": 2, "CONCAT": 3, "CONTRASTIVE_LOSS": 37,
        "CONVOLUTION": 4, "DATA": 5, "DECONVOLUTION": 39, "DROPOUT": 6, "DUMMY_DATA": 32, "EUCLIDEAN_LOSS": 7,
        "ELTWISE": 25, "EXP": 38, "FLATTEN": 8, "HDF5_DATA": 9, "HDF5_OUTPUT": 10, "HINGE_LOSS": 28, "IM2COL": 11,
        "IMAGE_DATA": 12, "INFOGAIN_LOSS": 13, "INNER_PRODUCT": 14, "LRN": 15, "MEMORY_DATA": 29,
        "MULTINOMIAL_LOGISTIC_LOSS": 16, "MVN": 34, "POOLING": 17, "POWER": 26, "RELU": 18, "SIGMOID": 19,
        "SIGMOID_CROSS_ENTROPY_LOSS": 27, "SILENCE": 36, "SOFTMAX": 20, "SOFTMAX_LOSS": 21, "SPLIT": 22, "SLICE": 33,
        "TANH": 23, "WINDOW_DATA": 24, "THRESHOLD": 31},
}
V1_TYPES = {
    "NONE": "", "ABSVAL": "AbsVal", "ACCURACY": "Accuracy", "ARGMAX": "ArgMax", "BNLL": "BNLL", "CONCAT": "Concat",
    "CONTRASTIVE_LOSS": "ContrastiveLoss", "CONVOLUTION": "Convolution", "DATA": "Data",
    "DECONVOLUTION": "Deconvolution", "DROPOUT": "Dropout", "DUMMY_DATA": "DummyData",
    "EUCLIDEAN_LOSS": "EuclideanLoss", "ELTWISE": "Eltwise", "EXP": "Exp", "FLATTEN": "Flatten",
    "HDF5_DATA": "HDF5Data", "HDF5_OUTPUT": "HDF5Output", "HINGE_LOSS": "HingeLoss", "IM2COL": "Im2col",
    "IMAGE_DATA": "ImageData", "INFOGAIN_LOSS": "InfogainLoss", "INNER_PRODUCT": "InnerProduct", "LRN": "LRN",
    "MEMORY_DATA": "MemoryData", "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss", "MVN": "MVN",
    "POOLING": "Pooling", "POWER": "Power", "RELU": "ReLU", "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss", "SILENCE": "Silence", "SOFTMAX": "Softmax",
    "SOFTMAX_LOSS": "SoftmaxWithLoss", "SPLIT": "Split", "SLICE": "Slice", "TANH": "TanH",
    "WINDOW_DATA": "WindowData", "THRESHOLD": "Threshold",
}

_FILLER = "M:FillerParameter"
_PARAMS = {  # LayerParameter's layer-specific fields
    "accuracy_param": "M", "argmax_param": "M", "batch_norm_param": "M:BatchNormParameter", "bias_param": "M",
    "clip_param": "M", "concat_param": "M:ConcatParameter", "contrastive_loss_param": "M",
    "convolution_param": "M:ConvolutionParameter", "crop_param": "M", "data_param": "M",
    "dropout_param": "M:DropoutParameter", "dummy_data_param": "M:DummyDataParameter",
    "eltwise_param": "M:EltwiseParameter", "elu_param": "M", "embed_param": "M", "exp_param": "M",
    "flatten_param": "M:FlattenParameter", "hdf5_data_param": "M", "hdf5_output_param": "M",
    "hinge_loss_param": "M", "image_data_param": "M:ImageDataParameter", "infogain_loss_param": "M",
    "inner_product_param": "M:InnerProductParameter", "input_param": "M:InputParameter", "log_param": "M",
    "lrn_param": "M:LRNParameter", "memory_data_param": "M:MemoryDataParameter", "mvn_param": "M",
    "parameter_param": "M", "pooling_param": "M:PoolingParameter", "power_param": "M", "prelu_param": "M",
    "python_param": "M", "recurrent_param": "M", "reduction_param": "M", "relu_param": "M:ReLUParameter",
    "reshape_param": "M", "scale_param": "M:ScaleParameter", "sigmoid_param": "M:EngineOnly",
    "softmax_param": "M:SoftmaxParameter", "spp_param": "M", "slice_param": "M", "swish_param": "M",
    "tanh_param": "M:EngineOnly", "threshold_param": "M", "tile_param": "M", "window_data_param": "M",
}
_V1_PARAMS = ("accuracy_param", "argmax_param", "concat_param", "contrastive_loss_param", "convolution_param",
              "data_param", "dropout_param", "dummy_data_param", "eltwise_param", "exp_param", "hdf5_data_param",
              "hdf5_output_param", "hinge_loss_param", "image_data_param", "infogain_loss_param",
              "inner_product_param", "lrn_param", "memory_data_param", "mvn_param", "pooling_param", "power_param",
              "relu_param", "sigmoid_param", "softmax_param", "slice_param", "tanh_param", "threshold_param",
              "window_data_param")

SCHEMA = {
    "NetParameter": {"name": "s", "input": "s*", "input_shape": "M:BlobShape*", "input_dim": "i*",
                     "force_backward": "b", "state": "M", "debug_info": "b", "layer": "M:LayerParameter*",
                     "layers": "M:V1LayerParameter*"},
    "BlobShape": {"dim": "i*"},
    "NetStateRule": {"phase": "E:Phase", "min_level": "i", "max_level": "i", "stage": "s*", "not_stage": "s*"},
    "ParamSpec": {"name": "s", "share_mode": "E:DimCheckMode", "lr_mult": "f", "decay_mult": "f"},
    "FillerParameter": {"type": "s", "value": "f", "min": "f", "max": "f", "mean": "f", "std": "f", "sparse": "i",
                        "variance_norm": "E:VarianceNorm"},
    "LayerParameter": dict({"name": "s", "type": "s", "bottom": "s*", "top": "s*", "phase": "E:Phase",
                            "loss_weight": "f*", "param": "M:ParamSpec*", "blobs": "M*", "propagate_down": "b*",
                            "include": "M:NetStateRule*", "exclude": "M:NetStateRule*", "transform_param": "M",
                            "loss_param": "M"}, **_PARAMS),
    "V1LayerParameter": dict({"bottom": "s*", "top": "s*", "name": "s", "include": "M:NetStateRule*",
                              "exclude": "M:NetStateRule*", "type": "E:V1LayerType", "blobs": "M*", "param": "s*",
                              "blob_share_mode": "E:DimCheckMode*", "blobs_lr": "f*", "weight_decay": "f*",
                              "loss_weight": "f*", "transform_param": "M", "loss_param": "M", "layer": "M"},
                             **{k: _PARAMS[k] for k in _V1_PARAMS}),
    "ConvolutionParameter": {"num_output": "u", "bias_term": "b", "pad": "u*", "kernel_size": "u*", "stride": "u*",
                             "dilation": "u*", "pad_h": "u", "pad_w": "u", "kernel_h": "u", "kernel_w": "u",
                             "stride_h": "u", "stride_w": "u", "group": "u", "weight_filler": _FILLER,
                             "bias_filler": _FILLER, "engine": "E:Engine", "axis": "i", "force_nd_im2col": "b"},
    "PoolingParameter": {"pool": "E:PoolMethod", "pad": "u", "pad_h": "u", "pad_w": "u", "kernel_size": "u",
                         "kernel_h": "u", "kernel_w": "u", "stride": "u", "stride_h": "u", "stride_w": "u",
                         "engine": "E:Engine", "global_pooling": "b", "round_mode": "E:RoundMode"},
    "InnerProductParameter": {"num_output": "u", "bias_term": "b", "weight_filler": _FILLER, "bias_filler": _FILLER,
                              "axis": "i", "transpose": "b"},
    "ReLUParameter": {"negative_slope": "f", "engine": "E:Engine"},
    "DropoutParameter": {"dropout_ratio": "f"},
    "LRNParameter": {"local_size": "u", "alpha": "f", "beta": "f", "norm_region": "E:NormRegion", "k": "f",
                     "engine": "E:Engine"},
    "BatchNormParameter": {"use_global_stats": "b", "moving_average_fraction": "f", "eps": "f"},
    "ScaleParameter": {"axis": "i", "num_axes": "i", "filler": _FILLER, "bias_term": "b", "bias_filler": _FILLER},
    "SoftmaxParameter": {"engine": "E:Engine", "axis": "i"},
    "ConcatParameter": {"axis": "i", "concat_dim": "u"},
    "EltwiseParameter": {"operation": "E:EltwiseOp", "coeff": "f*", "stable_prod_grad": "b"},
    "FlattenParameter": {"axis": "i", "end_axis": "i"},
    "InputParameter": {"shape": "M:BlobShape*"},
    "MemoryDataParameter": {"batch_size": "u", "channels": "u", "height": "u", "width": "u"},
    "ImageDataParameter": {"source": "s", "batch_size": "u", "rand_skip": "u", "shuffle": "b", "new_height": "u",
                           "new_width": "u", "is_color": "b", "scale": "f", "mean_file": "s", "crop_size": "u",
                           "mirror": "b", "root_folder": "s"},
    "DummyDataParameter": {"data_filler": "M:FillerParameter*", "shape": "M:BlobShape*", "num": "u*",
                           "channels": "u*", "height": "u*", "width": "u*"},
    "EngineOnly": {"engine": "E:Engine"},
}


class Problems:
    """Collects what a prototxt does that pyconv cannot do (and what it changes), so that all of
    it is reported at once, each naming its line."""

    def __init__(self):
        self.errors, self.notes, self.groups = [], [], {}

    def error(self, line, text):
        self.errors.append((line, text))

    def note(self, text):
        if text not in self.notes:
            self.notes.append(text)

    def group(self, template, name):
        """A note naming every layer it applies to: ``template`` holds ``{}`` for the names."""
        names = self.groups.setdefault(template, [])
        if name not in names:
            names.append(name)

    def all_notes(self):
        return self.notes + [t.format(", ".join(names)) for t, names in self.groups.items()]


def _convert(kind, scalar, name):
    """The Python value of one scalar for a field of type ``kind``; TextFormatError if it is not one."""
    t, text = scalar.kind, scalar.text
    where = (scalar.line, scalar.column)
    if kind in ("i", "u"):
        if t != "number" or not re.fullmatch(r"-?(?:0[xX][0-9a-fA-F]+|[0-9]+)", text):
            raise TextFormatError(f"{name}: expected an integer, got {scalar!r}", *where)
        v = int(text, 16) if "x" in text.lower() else int(text)
        if kind == "u" and v < 0:
            raise TextFormatError(f"{name}: expected an unsigned integer, got {v}", *where)
        return v
    if kind == "f":
        if t == "ident" and text.lower().lstrip("-") in ("inf", "infinity", "nan"):
            return float(text.lower().replace("infinity", "inf"))
        if t != "number":
            raise TextFormatError(f"{name}: expected a number, got {scalar!r}", *where)
        return float(int(text, 16)) if "x" in text.lower() else float(text.rstrip("fF"))
    if kind == "b":
        if t == "ident" and text in ("true", "True", "t"):
            return True
        if t == "ident" and text in ("false", "False", "f"):
            return False
        if t == "number" and text in ("0", "1"):
            return text == "1"
        raise TextFormatError(f"{name}: expected true or false, got {scalar!r}", *where)
    if kind == "s":
        if t != "string":
            raise TextFormatError(f"{name}: expected a quoted string, got {scalar!r}", *where)
        return text
    if kind.startswith("E:"):
        values = ENUMS[kind[2:]]
        if t == "ident" and text in values:
            return text
        if t == "number" and text.lstrip("-").isdigit():
            for k, v in values.items():
                if v == int(text):
                    return k
        raise TextFormatError(f"{name}: {scalar!r} is not one of {', '.join(values)}", *where)
    raise AssertionError(kind)


class Params:
    """One message checked against its schema: ``get`` / ``list`` give converted values, ``line``
    where a field is; unknown field names are reported to ``problems`` (with a suggestion) and
    type errors raise TextFormatError at once. Fields read are remembered (``unread``)."""

    def __init__(self, msg, schema, problems, context):
        self.msg, self.schema_name, self.context = msg, schema, context
        fields = SCHEMA[schema]
        self.values, self.lines, self.read = {}, {}, set()
        for f in msg.fields:
            kind = fields.get(f.name)
            if kind is None:
                close = difflib.get_close_matches(f.name, list(fields), 1)
                problems.error(f.line, f"{context}{f.name}: Caffe's {schema} has no field {f.name!r}"
                               + (f" (did you mean {close[0]!r}?)" if close else ""))
                continue
            repeated = kind.endswith("*")
            kind = kind.rstrip("*")
            if f.name in self.values and not repeated:
                raise TextFormatError(f"{f.name} is given more than once (it is not a repeated field of {schema})",
                                      f.line, f.column)
            if kind.startswith("M"):
                if not isinstance(f.value, Message):
                    raise TextFormatError(f"{f.name}: expected a message {{ ... }}, got {f.value!r}", f.line, f.column)
                sub = "" if schema == "NetParameter" else f"{context}{f.name}."
                value = Params(f.value, kind[2:], problems, sub) if kind.startswith("M:") else f.value
            else:
                if isinstance(f.value, Message):
                    raise TextFormatError(f"{f.name}: expected a value, got a message {{ ... }}", f.line, f.column)
                value = _convert(kind, f.value, f.name)
                if kind == "f" and not math.isfinite(value):
                    problems.error(f.line, f"{context}{f.name}: {value} is not a finite number")
            self.values.setdefault(f.name, []).append(value)
            self.lines.setdefault(f.name, f.line)

    def has(self, name):
        return name in self.values

    def get(self, name, default=None):
        self.read.add(name)
        v = self.values.get(name)
        return v[0] if v else default

    def list(self, name):
        self.read.add(name)
        return list(self.values.get(name, ()))

    def line(self, name=None):
        return self.lines.get(name, self.msg.line) if name else self.msg.line

    def unread(self):
        return [n for n in self.values if n not in self.read]
