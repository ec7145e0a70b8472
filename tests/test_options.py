"""Option dataclasses: parsing key=value text, validation, descriptions."""

import dataclasses
from typing import Literal

import pytest

from mnistkit.errors import OptionsError
from mnistkit.options import build_options, describe_options, options_to_dict, parse_assignments


@dataclasses.dataclass
class Opts:
    lr: float = 0.1
    hidden: int = 10
    nesterov: bool = False
    schedule: Literal["constant", "cosine"] = "constant"
    layers: tuple[int, ...] = (8, 4)

    def __post_init__(self):
        if self.lr <= 0:
            raise ValueError("lr must be > 0")


def test_text_values_are_converted_to_declared_types():
    opts = build_options(Opts, parse_assignments(
        ["lr=0.5", "hidden=3", "nesterov=yes", "schedule=cosine", "layers=512,256"]), "x")
    assert opts == Opts(0.5, 3, True, "cosine", (512, 256))


def test_unknown_option_lists_valid_ones_and_suggests():
    with pytest.raises(OptionsError, match=r"no option 'lrr'.*'lr'.*hidden \(int\)"):
        build_options(Opts, {"lrr": "1"}, "optimizer 'x'")


@pytest.mark.parametrize("pair", ["hidden=1.5", "hidden=abc", "nesterov=maybe", "schedule=exp",
                                  "lr=-1"])
def test_bad_values_raise_options_error(pair):
    with pytest.raises(OptionsError):
        build_options(Opts, parse_assignments([pair]), "x")


def test_assignment_without_equals_is_rejected():
    with pytest.raises(OptionsError, match="name=value"):
        parse_assignments(["lr"])


def test_describe_and_serialise():
    names = [(i.name, i.type_name, i.default) for i in describe_options(Opts)]
    assert names[0] == ("lr", "float", 0.1)
    assert names[3] == ("schedule", "constant|cosine", "constant")
    assert options_to_dict(Opts())["layers"] == [8, 4]

