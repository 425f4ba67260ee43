"""The sandbox: compiles and runs process owners' conditions, expressions and script tasks.

Owns the RestrictedPython policy (no imports, no ``_`` names or attributes, a small builtin set), the
step/time budget (a counter call inserted into every loop, comprehension and function body), the size
guards against memory bombs, and the compiled-code cache. Raises ``ScriptError`` (an ``EngineError``
raised by an injected helper passes through unchanged).
Must not import SpiffWorkflow (``engine/spiff.py`` wraps this module) nor anything else from engine
except ``engine.errors``.

Budget rules: every loop iteration, comprehension item and function call is one step; creating a
string, list, range or number costs one step per 100 items (64 bits for numbers), and no single value
may exceed ``max_items`` items (``_MAX_INT_BITS`` bits). A process-level memory limit on the worker
is still the final backstop; this module bounds what one script can allocate, it cannot meter C code.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import functools
import operator
import re
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from types import CodeType, ModuleType
from typing import Any, NamedTuple, TypeVar

from RestrictedPython import compile_restricted_eval, compile_restricted_exec
from RestrictedPython.Guards import full_write_guard, guarded_iter_unpack_sequence, guarded_unpack_sequence
from RestrictedPython.transformer import INSPECT_ATTRIBUTES, RestrictingNodeTransformer

from engine.errors import EngineError, ScriptError

_MAX_INT_BITS = 100_000
_MAX_SOURCE = 100_000
_SIZED = (str, bytes, list, tuple, dict, set, frozenset)
_SCALARS = frozenset({str, int, float, bool, type(None)})
_FORBIDDEN_CALLS = frozenset(
    "compile open globals locals vars type object getattr setattr delattr hasattr dir input help "
    "breakpoint exit quit memoryview super classmethod staticmethod property iter next id".split()
)
_BLOCKED_ATTRS = INSPECT_ATTRIBUTES | {
    "format",
    "format_map",
    "mro",
    "ljust",
    "rjust",
    "center",
    "zfill",
    "expandtabs",
    "translate",
    "maketrans",
}
_PERCENT_BOMB = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(?:\*|\d{4,}|\d*\.(?:\*|\d{4,}))")
_N = TypeVar("_N", bound=ast.AST)


class _BudgetExceeded(BaseException):
    """Raised inside a run; a BaseException so that ``except Exception`` in a script cannot catch it."""


class _Budget:
    __slots__ = ("deadline", "exceeded", "limit", "max_items", "steps")

    def __init__(self, limit: int, seconds: float, max_items: int) -> None:
        self.steps, self.limit, self.max_items = 0, limit, max_items
        self.deadline = time.perf_counter() + seconds
        self.exceeded = ""

    def step(self) -> bool:
        self.steps += 1
        if self.steps > self.limit or (not self.steps & 1023 and time.perf_counter() > self.deadline):
            self.exceed()
        return True

    def charge(self, units: int) -> None:
        self.steps += units // 100
        if self.steps > self.limit or time.perf_counter() > self.deadline:
            self.exceed()

    def exceed(self, reason: str = "") -> None:
        if not reason:
            over_time = time.perf_counter() > self.deadline
            reason = (
                "it ran longer than its time budget"
                if over_time
                else (f"it took more than {self.limit} steps (loop iterations, calls, items built)")
            )
        self.exceeded = self.exceeded or reason
        self.steps = max(self.steps, self.limit + 1)  # sticky: every later step fails too
        raise _BudgetExceeded(self.exceeded)

    def sized(self, value: object) -> object:
        if isinstance(value, _SIZED):
            if len(value) > self.max_items:
                self.exceed(f"it built a value of {len(value)} items (limit {self.max_items})")
            self.charge(len(value))
        return value


_CURRENT: ContextVar[_Budget | None] = ContextVar("gridcase_sandbox_budget", default=None)


def _budget() -> _Budget:
    current = _CURRENT.get()
    return current if current is not None else _Budget(100_000, 1.0, 100_000)


# ---- run-time guards (the names RestrictedPython and our policy call) ----------------------------


def _check_rendered(value: object, budget: _Budget) -> None:
    """Refuse turning a container into text when the text would be too large."""
    if type(value) in _SCALARS:
        return
    total, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        total += len(item) if isinstance(item, str | bytes) else 8
        if isinstance(item, int):
            total += item.bit_length() // 3
        elif isinstance(item, dict):
            stack.extend((x, depth + 1) for pair in item.items() for x in pair)
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend((x, depth + 1) for x in item)
        if total > budget.max_items or depth > 100:
            budget.exceed(f"it turned a value of more than {budget.max_items} characters into text")
    budget.charge(total)


def _precheck(op: str, a: object, b: object, budget: _Budget) -> None:
    size = bits = 0
    if op == "*":
        seq, n = (a, b) if isinstance(b, int) else (b, a)
        if isinstance(seq, _SIZED) and isinstance(n, int):
            size = len(seq) * n
        elif isinstance(a, int) and isinstance(b, int):
            bits = a.bit_length() + b.bit_length()
    elif op == "+" and isinstance(a, _SIZED) and isinstance(b, _SIZED):
        size = len(a) + len(b)
    elif op == "**" and isinstance(a, int) and isinstance(b, int) and b > 0 and abs(a) > 1:
        bits = max(1, abs(a).bit_length() - 1) * b
    elif op == "<<" and isinstance(a, int) and isinstance(b, int) and a:
        bits = a.bit_length() + max(b, 0)
    elif op == "%" and isinstance(a, str | bytes):
        text = a if isinstance(a, str) else a.decode("latin-1")
        if _PERCENT_BOMB.search(text):
            budget.exceed("its % formatting asks for a width or precision of 1000 or more")
        _check_rendered(b, budget)
    if size > budget.max_items:
        budget.exceed(f"it would build a value of {size} items (limit {budget.max_items})")
    if bits > _MAX_INT_BITS:
        budget.exceed(f"it would build a number of about {bits} bits (limit {_MAX_INT_BITS})")
    budget.charge(size + bits // 64 * 100)


_BINOPS: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add,
    "*": operator.mul,
    "**": operator.pow,
    "<<": operator.lshift,
    "%": operator.mod,
}
_GUARDED_OPS: dict[type[ast.operator], str] = {
    ast.Add: "+",
    ast.Mult: "*",
    ast.Pow: "**",
    ast.LShift: "<<",
    ast.Mod: "%",
}
_INPLACE: dict[str, Callable[[Any, Any], Any]] = {
    "+=": operator.iadd,
    "-=": operator.isub,
    "*=": operator.imul,
    "/=": operator.itruediv,
    "//=": operator.ifloordiv,
    "%=": operator.imod,
    "**=": operator.ipow,
    "<<=": operator.ilshift,
    ">>=": operator.irshift,
    "&=": operator.iand,
    "|=": operator.ior,
    "^=": operator.ixor,
}


def _op(op: str, a: object, b: object) -> object:
    budget = _budget()
    _precheck(op, a, b, budget)
    return budget.sized(_BINOPS[op](a, b))


def _inplacevar(op: str, a: object, b: object) -> object:
    budget = _budget()
    _precheck(op[:-1], a, b, budget)
    return budget.sized(_INPLACE[op](a, b))


def _fmtval(value: object) -> object:
    _check_rendered(value, _budget())
    return value


def _sized(value: object) -> object:
    return _budget().sized(value)


def _getattr(obj: object, name: str) -> object:
    if type(name) is not str or name.startswith("_") or name in _BLOCKED_ATTRS:
        raise AttributeError(f"the attribute '{name}' is not available in scripts")
    if isinstance(obj, type | ModuleType):
        raise AttributeError(f"attributes of types and modules ('{name}') are not available in scripts")
    value = getattr(obj, name)
    if isinstance(obj, _SIZED) and callable(value):
        return _metered_method(obj, name, value)
    return value


def _growth(obj: Any, name: str, args: tuple[Any, ...], budget: _Budget) -> tuple[Any, ...]:
    """Size a str/bytes replace() or join() before it runs; returns the (materialised) arguments."""
    size = 0
    if name == "replace" and len(args) >= 2 and type(args[0]) is type(args[1]) is type(obj):
        old, new = args[0], args[1]
        hits = obj.count(old) if old else len(obj) + 1
        if len(args) > 2 and isinstance(args[2], int) and args[2] >= 0:
            hits = min(hits, args[2])
        size = len(obj) + hits * max(len(new) - len(old), 0)
    elif name == "join" and args:
        parts = list(args[0])
        budget.sized(parts)
        size = sum(len(p) for p in parts if isinstance(p, str | bytes)) + len(obj) * len(parts)
        args = (parts, *args[1:])
    if size > budget.max_items:
        budget.exceed(f"{name}() would build {size} characters (limit {budget.max_items})")
    return args


def _metered_method(obj: Any, name: str, method: Callable[..., object]) -> Callable[..., object]:
    """Wrap a str/list/dict method so that what it builds or grows is size-checked and charged."""

    def call(*args: Any, **kwargs: Any) -> object:
        budget, before = _budget(), len(obj)
        if isinstance(obj, str | bytes):
            args = _growth(obj, name, args, budget)
        result = method(*args, **kwargs)
        if len(obj) > before:
            budget.sized(obj)
        return budget.sized(result)

    return call


def _getitem(obj: Any, key: object) -> object:
    result = obj[key]
    return _budget().sized(result) if isinstance(key, slice) else result


def _apply(func: Callable[..., object], *args: object, **kwargs: object) -> object:
    return func(*args, **kwargs)


# ---- builtins ------------------------------------------------------------------------------------


def _range(*args: int) -> range:
    budget, result = _budget(), range(*args)
    size = budget.max_items + 1  # len() overflows for ranges beyond sys.maxsize
    with contextlib.suppress(OverflowError):
        size = len(result)
    if size > budget.max_items:
        budget.exceed(f"range() of {size} numbers is over the limit of {budget.max_items}")
    budget.charge(size)
    return result


def _sized_builtin(real: Callable[..., object]) -> Callable[..., object]:
    return lambda *args, **kwargs: _budget().sized(real(*args, **kwargs))


def _str(*args: Any) -> object:
    if args:
        _check_rendered(args[0], _budget())
    return _budget().sized(str(*args))


def _sum(iterable: Any, start: int | float = 0) -> object:
    if not isinstance(start, int | float):
        raise TypeError("sum() only adds numbers in scripts")
    return sum(iterable, start)


def _round(number: Any, ndigits: int | None = None) -> object:
    if ndigits is not None and not -100 <= ndigits <= 100:
        raise ValueError("round() digits must be between -100 and 100")
    return round(number, ndigits)


_TYPE_WRAPPERS: dict[object, type] = {}
_BUILTINS: dict[str, object] = {
    "abs": abs,
    "all": all,
    "any": any,
    "bool": bool,
    "enumerate": enumerate,
    "float": float,
    "int": int,
    "len": len,
    "max": max,
    "min": min,
    "range": _range,
    "round": _round,
    "str": _str,
    "sum": _sum,
    "zip": zip,
    "sorted": _sized_builtin(sorted),
    "Exception": Exception,
    "ValueError": ValueError,
    "KeyError": KeyError,
    "TypeError": TypeError,
    "IndexError": IndexError,
    "ZeroDivisionError": ZeroDivisionError,
    "ArithmeticError": ArithmeticError,
    "LookupError": LookupError,
}
for _real in (list, tuple, set, dict):
    _wrapper = _sized_builtin(_real)
    _BUILTINS[_real.__name__] = _wrapper
    _TYPE_WRAPPERS[_wrapper] = _real
_TYPE_WRAPPERS[_str] = str
_TYPE_WRAPPERS[_range] = range


def _isinstance(obj: object, kinds: Any) -> bool:
    if isinstance(kinds, tuple):
        kinds = tuple(_TYPE_WRAPPERS.get(k, k) for k in kinds)
    return isinstance(obj, _TYPE_WRAPPERS.get(kinds, kinds))


_BUILTINS["isinstance"] = _isinstance
_GUARDS: dict[str, object] = {
    "_getattr_": _getattr,
    "_getitem_": _getitem,
    "_getiter_": iter,
    "_write_": full_write_guard,
    "_inplacevar_": _inplacevar,
    "_unpack_sequence_": guarded_unpack_sequence,
    "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
    "_apply_": _apply,
    "_op_": _op,
    "_fmtval_": _fmtval,
    "_sized_": _sized,
}


# ---- compile-time policy -------------------------------------------------------------------------


def _located(new: _N, like: ast.AST) -> _N:
    for node in ast.walk(new):
        if "lineno" in node._attributes and not hasattr(node, "lineno"):
            ast.copy_location(node, like)
    return new


def _call(name: str, args: list[ast.expr], like: ast.AST) -> ast.Call:
    return _located(ast.Call(func=ast.Name(name, ast.Load()), args=args, keywords=[]), like)


def _refused(what: str) -> Any:
    def visit(self: RestrictingNodeTransformer, node: ast.AST) -> None:
        self.error(node, f"{what} are not allowed in scripts.")

    return visit


def _stepped(visit_name: str) -> Any:
    """A visitor that runs RestrictedPython's, then puts ``_step_()`` first in the loop/function body."""

    def visit(self: RestrictingNodeTransformer, node: Any) -> Any:
        node = getattr(RestrictingNodeTransformer, visit_name)(self, node)
        node.body.insert(0, _located(ast.Expr(_call("_step_", [], node)), node))
        return node

    return visit


class _Policy(RestrictingNodeTransformer):
    """RestrictedPython's checks plus: budget steps, size-guarded operators, fewer statement kinds."""

    visit_For, visit_While, visit_FunctionDef = (
        _stepped(n) for n in ("visit_For", "visit_While", "visit_FunctionDef")
    )
    visit_ClassDef = _refused("class definitions")
    visit_Yield = visit_YieldFrom = _refused("generator functions (yield)")
    visit_With = _refused("'with' blocks")
    visit_Import = visit_ImportFrom = _refused("imports")

    def visit_Name(self, node: ast.Name) -> Any:
        if node.id in ("print", "printed"):
            self.error(node, f'"{node.id}" is not available in scripts.')
            return node
        return super().visit_Name(node)

    def visit_Call(self, node: ast.Call) -> Any:
        if isinstance(node.func, ast.Name) and node.func.id in _FORBIDDEN_CALLS:
            self.error(node, f"{node.func.id}() is not available in scripts.")
        return super().visit_Call(node)

    def visit_Attribute(self, node: ast.Attribute) -> Any:
        if node.attr in _BLOCKED_ATTRS - INSPECT_ATTRIBUTES:
            self.error(node, f'".{node.attr}" is not available in scripts (build text with f-strings).')
        return super().visit_Attribute(node)

    def visit_Lambda(self, node: ast.Lambda) -> Any:
        new: Any = super().visit_Lambda(node)
        new.body = _located(ast.BoolOp(ast.And(), [_call("_step_", [], node), new.body]), node)
        return new

    def visit_comprehension(self, node: ast.comprehension) -> Any:
        new: Any = super().visit_comprehension(node)
        new.ifs.insert(0, _call("_step_", [], node.iter))
        return new

    def visit_BinOp(self, node: ast.BinOp) -> Any:
        new: Any = super().visit_BinOp(node)
        symbol = _GUARDED_OPS.get(type(node.op))
        return new if symbol is None else _call("_op_", [ast.Constant(symbol), new.left, new.right], node)

    def visit_AugAssign(self, node: ast.AugAssign) -> Any:
        target = node.target
        if (
            isinstance(target, ast.Subscript)
            and isinstance(target.value, ast.Name)
            and isinstance(target.slice, ast.Name | ast.Constant)
        ):
            # counts[key] += 1  ->  counts[key] = counts[key] + 1 (both parts are side-effect free)
            load = ast.Subscript(copy.deepcopy(target.value), copy.deepcopy(target.slice), ast.Load())
            value = ast.BinOp(_located(load, target), node.op, node.value)
            return self.visit(_located(ast.Assign([target], _located(value, node)), node))
        return super().visit_AugAssign(node)

    def visit_Starred(self, node: ast.Starred) -> Any:
        if isinstance(node.ctx, ast.Load):
            self.error(node, "star-unpacking (*x) is not allowed in scripts.")
        return super().visit_Starred(node)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> Any:
        if node.type is None:
            self.error(node, "a bare 'except:' is not allowed; name the error, e.g. 'except ValueError:'.")
        return super().visit_ExceptHandler(node)

    def visit_FormattedValue(self, node: ast.FormattedValue) -> Any:
        for part in ast.walk(node.format_spec) if node.format_spec else ():
            if isinstance(part, ast.FormattedValue):
                self.error(node, "an f-string format may not be computed ({x:{y}}).")
            elif isinstance(part, ast.Constant) and re.search(r"\d{4,}", str(part.value)):
                self.error(node, "an f-string width or precision of 1000 or more is not allowed.")
        new: Any = super().visit_FormattedValue(node)
        new.value = _call("_fmtval_", [new.value], node.value)
        return new

    def visit_JoinedStr(self, node: ast.JoinedStr) -> Any:
        return _call("_sized_", [super().visit_JoinedStr(node)], node)  # type: ignore[list-item]


class _Compiled(NamedTuple):
    code: CodeType | None
    problems: tuple[str, ...]


@functools.lru_cache(maxsize=2048)
def _compile(source: str, mode: str) -> _Compiled:
    """Compile once per (source, mode); shared by all sandboxes because the policy has no settings."""
    if not isinstance(source, str):
        return _Compiled(None, (f"expected text, got {type(source).__name__}",))
    if len(source) > _MAX_SOURCE:
        return _Compiled(None, (f"it is {len(source)} characters long (limit {_MAX_SOURCE})",))
    compiler = compile_restricted_eval if mode == "eval" else compile_restricted_exec
    try:
        result = compiler(source.strip() if mode == "eval" else source, "<script>", policy=_Policy)
    except (ValueError, RecursionError, MemoryError, SyntaxError) as exc:
        return _Compiled(None, (f"it cannot be read: {exc}",))
    return _Compiled(result.code, tuple(result.errors) or (() if result.code else ("it cannot be compiled",)))


def _is_plain(value: Any, depth: int = 0) -> bool:
    if type(value) in _SCALARS or depth > 50:
        return type(value) in _SCALARS
    if type(value) is dict:
        return all(type(k) is str and _is_plain(v, depth + 1) for k, v in value.items())
    return type(value) in (list, tuple) and all(_is_plain(x, depth + 1) for x in value)


def _is_code(value: object) -> bool:
    return callable(value) or isinstance(value, ModuleType)


# ---- the public face -----------------------------------------------------------------------------


class Sandbox:
    """Evaluates expressions and runs scripts under the policy above, with per-run budgets."""

    def __init__(
        self,
        *,
        step_budget: int = 100_000,
        time_budget_s: float = 1.0,
        functions: Mapping[str, Callable[..., object]] | None = None,
        max_items: int = 100_000,
    ) -> None:
        if step_budget < 1 or time_budget_s <= 0 or max_items < 1:
            raise ValueError("step_budget, time_budget_s and max_items must be positive")
        helpers = dict(functions or {})
        for name, func in helpers.items():
            if not name.isidentifier() or name.startswith("_") or not callable(func):
                raise ValueError(f"sandbox function {name!r} needs a plain name and a callable")
        self._step_budget, self._time_budget_s, self._max_items = step_budget, time_budget_s, max_items
        self._base: dict[str, object] = {"__builtins__": dict(_BUILTINS), **_GUARDS, **helpers}

    def check_expression(self, source: str) -> list[str]:
        return list(_compile(source, "eval").problems)

    def check_script(self, source: str) -> list[str]:
        return list(_compile(source, "exec").problems)

    def evaluate(self, source: str, context: Mapping[str, object]) -> object:
        """Value of one expression (a gateway condition, a DMN cell, a timer) over ``context``."""
        code = self._code(source, "eval")
        scope = dict(context)
        scope.update(self._base)
        result = self._run(code, scope, source)
        if _is_code(result) or hasattr(result, "__next__"):
            raise ScriptError(
                "script.failed",
                "the expression gave a function or iterator, not a value",
                {"source": source, "error": type(result).__name__},
            )
        return result

    def execute(self, source: str, context: dict[str, object]) -> None:
        """Run a script task over the task data; on success write changed plain data back.

        Like SpiffWorkflow's TaskDataEnvironment: assignments update ``context``, ``del x`` removes
        ``x``, functions defined by the script and injected helpers are not left in the data. On any
        failure ``context`` is left exactly as it was (the script runs on a deep copy).
        """
        code = self._code(source, "exec")
        scope = copy.deepcopy(context)
        scope.update(self._base)
        self._run(code, scope, source)
        changed: dict[str, object] = {}
        for name, value in scope.items():
            if name in self._base or name == "_step_" or _is_code(value):
                continue
            old = context.get(name, changed)
            if type(old) is type(value) and old == value:
                continue
            if not _is_plain(value):
                raise ScriptError(
                    "script.failed",
                    f"the script left '{name}' holding a {type(value).__name__}; case data can only hold "
                    "text, numbers, true/false, lists and dicts (convert it, or 'del' it at the end)",
                    {"source": source, "error": "TypeError", "name": name},
                )
            changed[name] = value
        removed = [
            n
            for n in context
            if n not in self._base and n != "_step_" and (n not in scope or _is_code(scope[n]))
        ]
        for name in removed:
            del context[name]
        context.update(changed)

    def _code(self, source: str, mode: str) -> CodeType:
        compiled = _compile(source, mode)
        if compiled.code is None:
            kind = "expression" if mode == "eval" else "script"
            raise ScriptError(
                "script.forbidden",
                f"This {kind} is not allowed: {compiled.problems[0]}",
                {"source": source, "problems": list(compiled.problems)},
            )
        return compiled.code

    def _run(self, code: CodeType, scope: dict[str, object], source: str) -> object:
        budget = _Budget(self._step_budget, self._time_budget_s, self._max_items)
        scope["_step_"] = budget.step
        token = _CURRENT.set(budget)
        error: BaseException | None = None
        try:
            result = eval(code, scope)  # the sandboxed code object: compiled by _Policy above
        except _BudgetExceeded:
            pass
        except Exception as exc:
            error = exc
        finally:
            _CURRENT.reset(token)
            scope.pop("_step_", None)
        if isinstance(error, RecursionError | MemoryError):
            budget.exceeded = budget.exceeded or "it nested calls too deeply or ran out of memory"
        if budget.exceeded:  # checked first: a script cannot turn a budget stop into another error
            raise ScriptError(
                "script.budget_exceeded",
                f"The script was stopped: {budget.exceeded}",
                {"source": source, "steps": budget.steps, "step_budget": budget.limit},
            )
        if error is None:
            return result
        if isinstance(error, EngineError):
            raise error
        name = getattr(error, "name", None) if isinstance(error, NameError) else None
        if name:
            raise ScriptError(
                "script.undefined_name",
                f"there is no variable named '{name}'",
                {"name": name, "source": source},
            ) from error
        raise ScriptError(
            "script.failed",
            f"{type(error).__name__}: {error}",
            {"source": source, "error": type(error).__name__},
        ) from error
