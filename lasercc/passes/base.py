"""Pass infrastructure: ``Pass``, ``PassResult``, the registry, pipeline parsing and ``PassManager``.

A pass is a small frozen dataclass whose fields are its options (the xDSL shape), so the text
``"fold,dce,asnc-fit{max_segments=16},partition{system=kapoho-point}"`` parses into pass objects
with typed, validated options, and a pass object prints back to the same text (:meth:`Pass.spec`).

Passes are found, in order, in: the built-in registry (``@register_pass``), the ``lasercc.passes``
entry-point group of installed distributions (third-party plugins), and ``module:Class`` specs
(e.g. ``examples.custom_pass:WidenLayers{layers=fc1}``) imported on demand.

``PassManager`` runs a pipeline, verifies the graph after every pass (so a broken rewrite is blamed
on the pass that made it, not on a backend three steps later) and records what each pass changed
and how long it took.
"""

from __future__ import annotations

import dataclasses
import importlib
import time
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar, Union, get_args, get_origin

from lasercc.errors import LasercError, VerifyError
from lasercc.ir.graph import Graph, verify

ENTRY_POINT_GROUP = "lasercc.passes"

# built-in pass modules, imported on first registry lookup; missing ones (not written yet) are skipped
BUILTIN_MODULES = ("fold", "dce", "encode", "fuse", "partition", "asnc_fit", "legalize", "decompose", "signed")


class PipelineError(LasercError):
    """A bad ``--passes`` spec: unknown pass, unknown option or an option value of the wrong type."""


class PassVerifyError(VerifyError):
    """A pass produced a graph the verifier rejects; names the pass and shows the offending node."""

    def __init__(self, pass_name: str, err: VerifyError):
        self.pass_name = pass_name
        msg = str(err).split("\n")[0]
        super().__init__(f"pass {pass_name!r} produced an invalid graph: {msg}", err.node_text, err.node_name)


# --------------------------------------------------------------------------------------------
# Pass and PassResult
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PassResult:
    """What a pass returns: the (possibly same) graph, whether anything changed, and ``info``
    (counts, savings, or a pass's product such as a partition) for the records and reports."""

    graph: Graph
    changed: bool
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Pass:
    """Base of every pass. Subclasses are ``@dataclass(frozen=True)`` with typed option fields
    (``int``, ``float``, ``bool``, ``str``, ``Literal[...]``, ``X | None``, ``tuple[X, ...]``), a
    ``name`` class variable and a one-line docstring; they implement :meth:`run`."""

    name: ClassVar[str] = ""

    def run(self, graph: Graph) -> PassResult:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__}.run")

    def __call__(self, graph: Graph) -> Graph:
        """Passes compose as plain ``Graph -> Graph`` functions too."""
        return self.run(graph).graph

    @classmethod
    def doc(cls) -> str:
        """The first line of the docstring (what ``lasercc passes`` lists)."""
        d = (cls.__doc__ or "").strip()
        return d.splitlines()[0].strip() if d else ""

    @classmethod
    def options(cls) -> list[OptionInfo]:
        """The options (dataclass fields) with their type and default, for listings and parsing."""
        hints = _hints(cls)
        out = []
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            if f.default is not dataclasses.MISSING:
                default: Any = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            else:
                default = dataclasses.MISSING
            out.append(OptionInfo(f.name, hints.get(f.name, str), default, f.metadata.get("doc", "")))
        return out

    def spec(self) -> str:
        """This pass as pipeline text, listing only options that differ from their defaults."""
        opts = []
        for o in self.options():
            v = getattr(self, o.name)
            if o.default is dataclasses.MISSING or v != o.default:
                opts.append(f"{o.name}={_format_value(v)}")
        return self.name + ("{" + ",".join(opts) + "}" if opts else "")


@dataclass(frozen=True)
class OptionInfo:
    """One pass option: its name, Python type, default (``dataclasses.MISSING`` if required), doc."""

    name: str
    type: Any
    default: Any
    doc: str = ""

    @property
    def type_text(self) -> str:
        return _type_text(self.type)

    @property
    def required(self) -> bool:
        return self.default is dataclasses.MISSING


def option(default: Any = dataclasses.MISSING, doc: str = "") -> Any:
    """A pass option with a one-line doc shown by ``lasercc passes``: ``bits: int = option(8, "...")``."""
    if isinstance(default, (list, dict, set)):
        raise TypeError("pass options must be immutable (use a tuple)")
    return field(default=default, metadata={"doc": doc})


# --------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------

PASSES: dict[str, type[Pass]] = {}
_loaded = {"builtins": False, "entry_points": False}
_broken: dict[str, str] = {}  # built-in module -> import error (reported when a pass is not found)

P = TypeVar("P", bound=type[Pass])


def register_pass(cls: P) -> P:
    """Class decorator: add a pass to the registry under ``cls.name`` (must be unique)."""
    if not (isinstance(cls, type) and issubclass(cls, Pass)):
        raise TypeError("register_pass decorates Pass subclasses")
    if not dataclasses.is_dataclass(cls) or "__dataclass_fields__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__} must be decorated with @dataclass(frozen=True)")
    if not cls.name:
        raise TypeError(f"{cls.__name__} needs a `name` class variable")
    other = PASSES.get(cls.name)
    if other is not None and (other.__module__, other.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ValueError(f"pass name {cls.name!r} already registered by {other.__module__}.{other.__qualname__}")
    PASSES[cls.name] = cls
    return cls


def load_builtins() -> None:
    """Import the built-in pass modules (each registers its passes); skip ones that do not exist."""
    if _loaded["builtins"]:
        return
    _loaded["builtins"] = True
    for mod in BUILTIN_MODULES:
        full = f"lasercc.passes.{mod}"
        try:
            importlib.import_module(full)
        except ModuleNotFoundError as e:
            if e.name != full:
                _broken[full] = f"{type(e).__name__}: {e}"
        except Exception as e:  # noqa: BLE001 - one broken module must not hide every other pass
            _broken[full] = f"{type(e).__name__}: {e}"


def load_entry_points() -> None:
    """Register third-party passes advertised in the ``lasercc.passes`` entry-point group."""
    if _loaded["entry_points"]:
        return
    _loaded["entry_points"] = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as e:  # a broken plugin must not break the compiler
            raise PipelineError(f"pass plugin {ep.name!r} ({ep.value}) failed to load: {e}") from e
        if isinstance(obj, type) and issubclass(obj, Pass):
            PASSES.setdefault(obj.name or ep.name, obj)


def all_passes() -> dict[str, type[Pass]]:
    """Every known pass (built-ins and entry-point plugins), by name, sorted."""
    load_builtins()
    load_entry_points()
    return dict(sorted(PASSES.items()))


def get_pass(name: str) -> type[Pass]:
    """The pass class for a registry name or a ``module:Class`` spec."""
    if ":" in name:
        return _import_pass(name)
    known = all_passes()
    if name not in known:
        broken = "".join(f"; note: {m} failed to import ({err})" for m, err in _broken.items())
        raise PipelineError(f"unknown pass {name!r}; valid passes: {', '.join(known)} (or module:Class){broken}")
    return known[name]


def _import_pass(spec: str) -> type[Pass]:
    mod_name, _, attr = spec.partition(":")
    if not mod_name.strip() or not attr.strip():
        raise PipelineError(f"bad pass spec {spec!r}: a plugin pass is module:Class, "
                            "e.g. examples.custom_pass:WidenLayers")
    try:
        mod = importlib.import_module(mod_name)
    except (ImportError, ValueError) as e:  # ValueError: relative or malformed module names
        raise PipelineError(f"cannot import pass module {mod_name!r} (from {spec!r}): {e}") from None
    obj = mod
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise PipelineError(f"module {mod_name!r} has no attribute {attr!r} (from {spec!r})")
    if not (isinstance(obj, type) and issubclass(obj, Pass)):
        raise PipelineError(f"{spec!r} is not a Pass subclass")
    return obj


# --------------------------------------------------------------------------------------------
# pipeline text
# --------------------------------------------------------------------------------------------


def parse_pipeline(spec: str | Sequence[str | Pass]) -> list[Pass]:
    """``"fold,dce,asnc-fit{max_segments=16}"`` -> pass objects (options typed by the dataclass fields).

    Option values: ints (``16``, ``0x10``), floats, ``true``/``false``, strings (bare or quoted),
    ``none`` for optional options, and tuples as ``[a,b,c]``. A list of specs / pass objects is
    accepted too (what a Python caller naturally has).
    """
    if not isinstance(spec, str):
        out: list[Pass] = []
        for s in spec:
            out.extend([s] if isinstance(s, Pass) else parse_pipeline(s))
        return out
    return [_parse_one(item) for item in _split_top(spec, ",") if item.strip()]


def make_pass(name: str, **options: Any) -> Pass:
    """Build a pass by name with already-typed options (raises PipelineError on unknown options)."""
    cls = get_pass(name)
    _check_option_names(cls, name, options)
    try:
        return cls(**options)
    except TypeError as e:
        raise PipelineError(f"pass {name!r}: {e}") from None


def _parse_one(item: str) -> Pass:
    item = item.strip()
    if "{" in item:
        if not item.endswith("}"):
            raise PipelineError(f"bad pass spec {item!r}: options go in braces at the end, e.g. name{{k=v}}")
        name, body = item[: item.index("{")].strip(), item[item.index("{") + 1: -1]
    else:
        name, body = item, ""
    if not name:
        raise PipelineError(f"bad pass spec {item!r}: missing pass name")
    cls = get_pass(name)
    raw: dict[str, str] = {}
    for kv in _split_top(body, ","):
        if not kv.strip():
            continue
        if "=" not in kv:
            raise PipelineError(f"pass {name!r}: option {kv.strip()!r} needs a value (name=value)")
        k, v = kv.split("=", 1)
        k = k.strip().replace("-", "_")
        if k in raw:
            raise PipelineError(f"pass {name!r}: option {k!r} given twice")
        raw[k] = v.strip()
    _check_option_names(cls, name, raw)
    infos = {o.name: o for o in cls.options()}
    kwargs = {k: _coerce(v, infos[k].type, f"pass {name!r} option {k}={v}") for k, v in raw.items()}
    missing = [o.name for o in infos.values() if o.required and o.name not in kwargs]
    if missing:
        raise PipelineError(f"pass {name!r} needs option(s) {', '.join(missing)}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise PipelineError(f"pass {name!r}: {e}") from None


def _check_option_names(cls: type[Pass], name: str, given: Iterable[str]) -> None:
    valid = [o.name for o in cls.options()]
    for k in given:
        if k not in valid:
            listing = ", ".join(f"{o.name}: {o.type_text}" for o in cls.options()) or "none"
            raise PipelineError(f"pass {name!r} has no option {k!r}; valid options: {listing}")


def _split_top(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside braces, brackets and quotes."""
    parts, depth, cur, quote = [], 0, [], ""
    for ch in text:
        if quote:
            cur.append(ch)
            if ch == quote:
                quote = ""
            continue
        if ch in "\"'":
            quote = ch
        elif ch in "{[(":
            depth += 1
        elif ch in "}])":
            depth -= 1
            if depth < 0:
                raise PipelineError(f"unbalanced {ch!r} in {text!r}")
        elif ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    if depth or quote:
        raise PipelineError(f"unbalanced brackets or quotes in {text!r}")
    parts.append("".join(cur))
    return parts


_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


def _coerce(text: str, tp: Any, where: str) -> Any:
    """Parse option text into a value of type ``tp`` (a resolved annotation)."""
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        if type(None) in args and text.lower() in ("none", "null", ""):
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(text, a, where)
            except PipelineError as e:
                errors.append(str(e))
        raise PipelineError(f"{where}: expected {_type_text(tp)}")
    if origin is Literal:
        for a in args:
            if str(a) == _unquote(text) or (isinstance(a, bool) and text.lower() in (_TRUE if a else _FALSE)):
                return a
        raise PipelineError(f"{where}: expected one of {', '.join(map(str, args))}")
    if origin in (tuple, list):
        inner = text.strip()
        if inner.startswith("[") and inner.endswith("]"):
            inner = inner[1:-1]
        items = [s.strip() for s in _split_top(inner, ",") if s.strip()] if "," in inner or "[" not in text \
            else []
        if not items and inner.strip():
            items = [inner.strip()]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(s, args[0], where) for s in items)
        if args and len(args) != len(items):
            raise PipelineError(f"{where}: expected {len(args)} values")
        return tuple(_coerce(s, a, where) for s, a in zip(items, args or [str] * len(items)))
    if tp is bool:
        t = text.lower()
        if t in _TRUE:
            return True
        if t in _FALSE:
            return False
        raise PipelineError(f"{where}: expected true or false")
    if tp is int:
        try:
            return int(text, 0)
        except ValueError:
            raise PipelineError(f"{where}: expected an integer") from None
    if tp is float:
        try:
            return float(text)
        except ValueError:
            raise PipelineError(f"{where}: expected a number") from None
    if tp is str or tp is Any:
        return _unquote(text)
    if isinstance(tp, type) and callable(tp):
        try:
            return tp(_unquote(text))
        except Exception as e:  # noqa: BLE001 - user-defined option types
            raise PipelineError(f"{where}: {e}") from None
    raise PipelineError(f"{where}: unsupported option type {_type_text(tp)}")


def _unquote(s: str) -> str:
    s = s.strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'":
        return s[1:-1]
    return s


def _format_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (tuple, list)):
        return "[" + ",".join(_format_value(x) for x in v) + "]"
    if v is None:
        return "none"
    return str(v)


def _type_text(tp: Any) -> str:
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        return "|".join(str(a) for a in args)
    if origin in (Union, types.UnionType):
        return " | ".join(_type_text(a) for a in args)
    if origin in (tuple, list):
        if len(args) == 2 and args[1] is Ellipsis:
            return f"[{_type_text(args[0])},...]"
        return "[" + ",".join(_type_text(a) for a in args) + "]"
    if tp is type(None):
        return "none"
    return getattr(tp, "__name__", str(tp))


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - unresolvable annotations: fall back to the raw ones
        return {f.name: f.type for f in dataclasses.fields(cls)}


# --------------------------------------------------------------------------------------------
# PassManager
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PassRecord:
    """What one pass did in a pipeline run: for manifests, reports and ``--verbose`` listings."""

    name: str
    spec: str
    changed: bool
    seconds: float
    nodes_before: int
    nodes_after: int
    info: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "spec": self.spec, "changed": self.changed, "seconds": round(self.seconds, 6),
                "nodes_before": self.nodes_before, "nodes_after": self.nodes_after,
                "info": _jsonable(self.info)}


class PassManager:
    """Runs a pipeline of passes, verifying the graph after each one.

    ``PassManager("fold,dce")`` or ``PassManager([Fold(), DCE()])``. ``run`` returns the final
    graph and one :class:`PassRecord` per pass. ``verify=False`` skips the checks (benchmarks of
    huge shape-only graphs); ``on_record`` is called after each pass (progress printing).
    """

    def __init__(self, passes: str | Sequence[str | Pass], verify: bool = True,
                 on_record: Callable[[PassRecord], None] | None = None):
        self.passes: list[Pass] = parse_pipeline(passes)
        self.verify = verify
        self.on_record = on_record

    def __repr__(self) -> str:
        return f"PassManager({self.spec()!r})"

    def spec(self) -> str:
        return ",".join(p.spec() for p in self.passes)

    def run(self, graph: Graph) -> tuple[Graph, list[PassRecord]]:
        if self.verify:
            try:
                verify(graph)
            except VerifyError as e:
                raise PassVerifyError("<input>", e) from None
        records: list[PassRecord] = []
        for p in self.passes:
            before = len(graph.nodes)
            t0 = time.perf_counter()
            res = p.run(graph)
            dt = time.perf_counter() - t0
            if not isinstance(res, PassResult):
                raise TypeError(f"pass {p.name!r} returned {type(res).__name__}, not PassResult")
            if self.verify and (res.changed or res.graph is not graph):
                try:
                    verify(res.graph)
                except VerifyError as e:
                    raise PassVerifyError(p.spec(), e) from None
            rec = PassRecord(p.name, p.spec(), res.changed, dt, before, len(res.graph.nodes), dict(res.info))
            records.append(rec)
            if self.on_record is not None:
                self.on_record(rec)
            graph = res.graph
        return graph, records


def run_passes(graph: Graph, passes: str | Sequence[str | Pass], verify: bool = True) -> Graph:
    """Convenience: run a pipeline and return only the graph."""
    return PassManager(passes, verify=verify).run(graph)[0]


def _jsonable(v: Any) -> Any:
    """Pass info made JSON-safe: objects with ``to_json`` (e.g. a Partition) become their summary."""
    if hasattr(v, "summary") and callable(v.summary):
        return _jsonable(v.summary())
    if hasattr(v, "to_json") and callable(v.to_json):
        return _jsonable(v.to_json())
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if hasattr(v, "item"):
        return v.item()
    return str(v)
