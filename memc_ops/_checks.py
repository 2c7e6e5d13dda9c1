"""Argument checks shared by the Python wrappers, run before the op is called.

The op schemas check shapes and dtypes (memc_ops' C++ ``check_*`` helpers); these catch what
never reaches them usefully: a non-tensor argument (the dispatcher's message names no argument),
and tensors on different devices (one on 'meta' would select the fake kernel and return an
uninitialised tensor). They read only types and devices, so they also run under torch.compile.
"""

from torch import Tensor


def check_tensor(op: str, name: str, value, shape: str) -> None:
    if not isinstance(value, Tensor):
        hint = " (convert it with torch.from_numpy)" if type(value).__module__ == "numpy" else ""
        got = "None" if value is None else _type_name(value)
        raise TypeError(f"{op}: {name} must be a torch.Tensor of shape {shape}; got {got}{hint}")


def check_same_device(op: str, reference_name: str, reference: Tensor, **others: Tensor) -> None:
    for name, tensor in others.items():
        if tensor.device != reference.device:
            raise RuntimeError(f"{op}: {name} must be on the device of {reference_name} ({reference.device}); "
                               f"got {tensor.device}")


def check_bool(op: str, name: str, value) -> None:
    if not isinstance(value, bool):
        got = "None" if value is None else f"{_type_name(value)} {value!r}"
        raise TypeError(f"{op}: {name} must be True or False; got {got}")


def _type_name(value) -> str:
    kind = type(value)
    return kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
