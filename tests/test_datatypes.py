"""sdcli.datatypes: dataclasses made without compiling, which behave as `@dataclass` ones do.

Each class here is written twice, once with the standard decorator and once with sdcli's, and
every behaviour a caller can see is compared between the two."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import pickle
from dataclasses import FrozenInstanceError, dataclass, field
from typing import Any

import pytest

from sdcli.apitypes import GeneratedImage
from sdcli.datatypes import frozen, mutable
from sdcli.infotext import Infotext


def _value_body() -> dict[str, Any]:
    """The namespace of a class with every kind of field sdcli's types use."""
    return {
        "__module__": __name__,
        "__qualname__": "Value",
        "__doc__": "A value.",
        "__annotations__": {"a": "int", "b": "str", "c": "dict[str, Any]", "d": "bytes"},
        "b": "x",
        "c": field(default_factory=dict, hash=False),
        "d": field(default=b"", repr=False, compare=False),
    }


def _pair(ours: Any, theirs: Any) -> tuple[Any, Any]:
    """The same class made by sdcli's decorator and by dataclasses'."""
    return ours(type("Value", (), _value_body())), theirs(type("Value", (), _value_body()))


FROZEN = _pair(frozen, dataclass(frozen=True))
MUTABLE = _pair(mutable, dataclass)


@pytest.mark.parametrize(("ours", "theirs"), [FROZEN, MUTABLE], ids=["frozen", "mutable"])
def test_construction_repr_and_equality_match_dataclasses(ours: Any, theirs: Any) -> None:
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
        ((1,), {}),
        ((1, "y"), {"d": b"z"}),
        ((), {"a": 2, "c": {"k": [1]}}),
        ((3, "y", {"k": 1}, b"bytes"), {}),
    ]
    for args, kwargs in calls:
        mine, std = ours(*args, **kwargs), theirs(*args, **kwargs)
        assert repr(mine) == repr(std)
        assert vars(mine) == vars(std)
        assert dataclasses.asdict(mine) == dataclasses.asdict(std)
    # equality: by the compared fields only, never with another class
    assert ours(1, d=b"one") == ours(1, d=b"two")
    assert ours(1) != ours(2) and ours(1, c={"k": 1}) != ours(1, c={"k": 2})
    assert ours(1) != theirs(1) and ours(1).__eq__(theirs(1)) is NotImplemented
    assert [f.name for f in dataclasses.fields(ours)] == ["a", "b", "c", "d"]
    assert ours.__match_args__ == theirs.__match_args__ == ("a", "b", "c", "d")
    assert str(inspect.signature(ours)) == str(inspect.signature(theirs))
    assert dataclasses.is_dataclass(ours(1))
    changed = dataclasses.replace(ours(1, c={"k": 1}), b="z")
    assert repr(changed) == repr(dataclasses.replace(theirs(1, c={"k": 1}), b="z"))
    assert ours(1).c is not ours(1).c  # a new default each time
    made = ours(1, c={"k": [1]}, d=b"z")
    for again in (copy.copy(made), copy.deepcopy(made)):
        assert vars(again) == vars(made)


@pytest.mark.parametrize(
    "made", [GeneratedImage(b"png", 0, seed=5), Infotext("a cat", params={"Steps": "2"})]
)
def test_sdcli_types_survive_pickling(made: object) -> None:
    again = pickle.loads(pickle.dumps(made))
    assert again == made and repr(again) == repr(made)


def test_frozen_refuses_changes_as_dataclasses_do() -> None:
    ours, theirs = FROZEN
    for made in (ours(1), theirs(1)):
        with pytest.raises(FrozenInstanceError, match="cannot assign to field 'a'"):
            made.a = 2
        with pytest.raises(FrozenInstanceError, match="cannot assign to field 'new'"):
            made.new = 2
        with pytest.raises(FrozenInstanceError, match="cannot delete field 'b'"):
            del made.b
    # hashed by the fields neither compare=False nor hash=False leave out: equal -> same hash
    assert hash(ours(1, "y", {"k": 1}, b"q")) == hash(theirs(1, "y", {"k": 2}, b"r"))
    assert {ours(1), ours(1, d=b"other")} == {ours(1)}


def test_mutable_takes_changes_and_is_not_hashable() -> None:
    ours, theirs = MUTABLE
    made = ours(1)
    made.a = 5
    del made.d
    assert "d" not in vars(made) and made.a == 5
    assert ours.__hash__ is None and theirs.__hash__ is None
    with pytest.raises(TypeError, match="unhashable"):
        hash(ours(1))


def test_mutable_without_eq_compares_by_identity_as_dataclasses_does() -> None:
    ours, theirs = _pair(mutable(eq=False), dataclass(eq=False))
    for cls in (ours, theirs):
        one, same = cls(1), cls(1)
        assert one != same and one == one and len({one, same}) == 2
        assert [one, same].index(same) == 1  # a list finds this one, not an equal one
    assert repr(ours(1, "y")) == repr(theirs(1, "y"))


@pytest.mark.parametrize("decorator", [frozen, mutable])
def test_wrong_arguments_are_type_errors(decorator: Any) -> None:
    made = decorator(type("Value", (), _value_body()))
    cases: list[tuple[tuple[Any, ...], dict[str, Any], str]] = [
        ((), {}, "missing argument 'a'"),
        ((1, "b", {}, b"", 5), {}, "takes 4 arguments but 5 were given"),
        ((1,), {"a": 1}, "unexpected argument 'a'"),  # given twice
        ((1,), {"e": 1}, "unexpected argument 'e'"),
    ]
    for args, kwargs, message in cases:
        with pytest.raises(TypeError, match=message):
            made(*args, **kwargs)


def test_a_class_keeps_its_own_methods_and_gets_a_docstring() -> None:
    @frozen
    class Own:
        x: int

        def __repr__(self) -> str:
            return "own"

        def __hash__(self) -> int:
            return 7

    assert repr(Own(1)) == "own" and hash(Own(1)) == 7 and Own(1) == Own(1)
    # The field names only, not as dataclasses writes it (`Own(x: int)`, here with postponed
    # annotations `Own(x: 'int')`), which needs inspect (a cost at import); inspect.signature
    # still shows the types as dataclasses' does (see above).
    assert Own.__doc__ == "Own(x)"
    std: type = dataclasses.dataclass(type("Own", (), {"__annotations__": {"x": "int"}}))
    assert std.__doc__ == "Own(x: 'int')"


def test_what_the_shared_methods_cannot_do_is_refused_when_the_class_is_made() -> None:
    for body in (
        {"__annotations__": {"a": "int"}, "__post_init__": lambda self: None},
        {"__annotations__": {"a": "int"}, "__init__": lambda self: None},
        {"__annotations__": {"a": "int"}, "a": field(kw_only=True)},
        {"__annotations__": {"a": "int"}, "a": field(default=0, init=False)},
    ):
        with pytest.raises(TypeError, match=r"sdcli\.datatypes"):
            frozen(type("Bad", (), {"__doc__": "bad", **body}))


def test_making_a_class_compiles_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the decorators are for: dataclasses compiles its methods with exec (the one such
    call in the module), at ~0.6 M instructions each."""
    compiled: list[str] = []

    def counting(source: str, *namespaces: Any) -> None:
        compiled.append(source)
        exec(source, *namespaces)

    monkeypatch.setattr(dataclasses, "exec", counting, raising=False)
    _pair(frozen, mutable)
    assert compiled == []
    _pair(dataclass(frozen=True), dataclass)
    assert len(compiled) == 6 + 3  # the standard decorators: what the counting sees


def test_sdcli_makes_no_dataclass_with_the_compiling_decorator() -> None:
    """Every command's start-up pays for the classes it defines: sdcli's own use
    sdcli.datatypes (the fake web UI, a test tool, may use anything)."""
    import ast
    from pathlib import Path

    root = Path(__file__).parent.parent / "sdcli"
    found = []
    for path in sorted(root.rglob("*.py")):
        if path.parent.name == "testing" or path.name == "datatypes.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                for deco in node.decorator_list:
                    target = deco.func if isinstance(deco, ast.Call) else deco
                    if ast.unparse(target) in ("dataclass", "dataclasses.dataclass"):
                        found.append(f"{path.relative_to(root)}: {node.name}")
    assert found == []
