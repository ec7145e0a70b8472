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



# -- declared bounds ---------------------------------------------------------------------------
import dataclasses as _dc  # noqa: E402

from mnistkit.options import (  # noqa: E402
    bounds_text,
    check_declared,
    check_options_class,
    option,
)


@_dc.dataclass
class Bounded:
    size: int = option(4, "units", ge=1)
    rate: float = option(0.5, "a rate", gt=0, le=1)
    decay: float = option(0.9, "a decay", ge=0, lt=1)
    sizes: tuple[int, ...] = option((3, 2), "sizes", ge=1)
    free: float = option(-2.0, "anything")

    def __post_init__(self) -> None:
        check_declared(self)


@pytest.mark.parametrize(("values", "message"), [
    ({"size": 0}, "size must be >= 1; got 0"),
    ({"rate": 0.0}, "rate must be in (0, 1]; got 0.0"),
    ({"rate": 1.5}, "rate must be in (0, 1]; got 1.5"),
    ({"decay": 1.0}, "decay must be in [0, 1); got 1.0"),
    ({"decay": -0.1}, "decay must be in [0, 1); got -0.1"),
    ({"sizes": (3, 0)}, "each sizes value must be >= 1; got (3, 0)"),
])
def test_declared_bounds_refuse_values_outside_them(values, message):
    text = {k: ",".join(map(str, v)) if isinstance(v, tuple) else str(v)
            for k, v in values.items()}
    with pytest.raises(OptionsError) as caught:  # from the command line
        build_options(Bounded, text, "model 'b'")
    assert str(caught.value) == f"invalid options for model 'b': {message}"
    with pytest.raises(ValueError) as caught:  # built in code: the same check
        Bounded(**values)
    assert str(caught.value) == message


@pytest.mark.parametrize("values", [{"size": "1"}, {"rate": "1"}, {"decay": "0"},
                                    {"free": "-1e9"}, {"sizes": "1,1,1"}])
def test_values_on_the_bounds_or_unbounded_are_accepted(values):
    build_options(Bounded, values, "model 'b'")


def test_bounds_are_described_for_listings_and_checked_at_registration():
    texts = {info.name: info.bounds for info in describe_options(Bounded)}
    assert texts == {"size": ">= 1", "rate": "in (0, 1]", "decay": "in [0, 1)",
                     "sizes": ">= 1", "free": ""}
    assert bounds_text(_dc.fields(Bounded)[0]) == ">= 1"

    @_dc.dataclass
    class BadBound:
        x: float = option(1.0, "x", ge="zero")

    with pytest.raises(TypeError, match="bound ge='zero' is not a finite number"):
        check_options_class(BadBound)
