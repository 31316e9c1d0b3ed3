"""Static checks of an LLM-written reward program before it ever runs (issue 8, section 2).

`check_program(source, attributes)` parses the program and walks its syntax tree against allowlists: which
statements, which names, which attributes. A program that passes is returned as a `CheckedProgram`; one that does
not raises `ProgramRejected`, whose text lists every problem with its line number, worded to be sent back to the
LLM as is. The checker is the first of two walls: accepted code still runs only in the sandbox (separate process,
CPU/memory/time limits), so the checker aims at clear early feedback and at keeping files, processes, the network
and Python's internals out of reach, not at bounding run time.

The rules (`RULES` states them positively for the prompt):

- exactly one top-level `def compute_dense_reward(obs, action)` (two plain positional parameters, no decorator);
  helper functions are allowed: models often factor out a distance or tolerance term, each helper is checked by the
  same rules, and since `obs` may only be read as `obs.<name>` a helper never receives the snapshot itself, so every
  read of the observation is still checked against the abstraction;
- at the top level only imports, constant assignments, function definitions and a docstring (nothing else runs
  when the program is loaded);
- imports: `import numpy as np`, `import math`, `from math import <name>`;
- `obs` is read only as `obs.<attribute>` with an attribute of the task's abstraction (unknown ones are reported
  with close matches), never assigned, rebound, deleted or passed around whole;
- names: the function's own variables, helpers and constants, `np`, `math`, and a short list of builtins
  (`SAFE_BUILTINS`); `exec`, `eval`, `compile`, `open`, `getattr` and friends get a message of their own;
- attributes: of `np` an allowlist of numerical functions and constants (`NUMPY_FUNCTIONS`, `np.linalg.norm`),
  of `math` its public names (all pure functions), of anything else an allowlist of array methods and properties
  (`VALUE_ATTRIBUTES`). An allowlist, not a denylist of `np.save`, `np.load`, `tofile`, ...: numpy has hundreds of
  names and grows with each release, and a name we forget to deny is a hole, while a name we forget to allow is
  only a clear message the model can act on;
- no dunder names, attributes or strings, no attribute starting with `_`, no `global`/`nonlocal`, classes,
  `try`, `with`, `del`, `async`, `yield`, decorators, and no `out=` keyword (writing into arrays of the snapshot);
- `while True:` (a constant true test) needs a `break`; other loops are bounded by the sandbox's time limit.

Why not RestrictedPython (9.0, looked at before writing this): it compiles code so that every attribute access,
item access, write and import calls guard functions (`_getattr_`, `_write_`, ...) that the executing side must
supply; its static pass only refuses names starting with `_` and a few introspection attributes. What we need
statically is different and domain-specific (the abstraction's attribute names with suggestions, a numpy
allowlist, the exact signature, one message list for the LLM), and execution isolation is the sandbox's job (a
separate process), which would have to adopt RestrictedPython's guards for it to add anything. It also needs
Python >= 3.11, while the package supports 3.10. A small allowlist walker over `ast` (this module) fits better here.
"""

from __future__ import annotations

import ast
import difflib
import math
from collections.abc import Collection
from dataclasses import dataclass

FUNCTION_NAME = "compute_dense_reward"
PARAMETERS = ("obs", "action")

SAFE_BUILTINS = frozenset(
    {
        "abs", "all", "any", "bool", "dict", "divmod", "enumerate", "filter", "float", "int", "isinstance", "len",
        "list", "map", "max", "min", "pow", "range", "reversed", "round", "set", "sorted", "sum", "tuple", "zip",
        "True", "False", "None", "ValueError",
    }
)  # fmt: skip
FORBIDDEN_CALLS = {  # builtins a model might reach for, each with the reason it gets
    "exec": "runs arbitrary code",
    "eval": "runs arbitrary code",
    "compile": "builds arbitrary code",
    "open": "touches files",
    "input": "reads from the terminal",
    "breakpoint": "starts a debugger",
    "__import__": "imports arbitrary modules",
    "getattr": "reads attributes by name, around the checks",
    "setattr": "writes attributes by name",
    "delattr": "deletes attributes by name",
    "hasattr": "reads attributes by name, around the checks",
    "globals": "exposes the interpreter's internals",
    "locals": "exposes the interpreter's internals",
    "vars": "exposes the interpreter's internals",
    "dir": "exposes the interpreter's internals",
    "type": "exposes the interpreter's internals",
    "object": "exposes the interpreter's internals",
    "super": "exposes the interpreter's internals",
    "memoryview": "exposes raw memory",
    "print": "writes output; the function must only return the reward",
    "format": "formats objects, a way around the attribute checks",
}
NUMPY_FUNCTIONS = frozenset(
    {
        # constants and types
        "pi", "e", "inf", "newaxis", "float32", "float64", "int32", "int64",
        # construction
        "array", "asarray", "zeros", "ones", "full", "zeros_like", "ones_like", "full_like", "arange", "linspace",
        "eye", "concatenate", "stack", "hstack", "vstack", "reshape", "ravel", "squeeze", "tile", "repeat",
        # elementwise
        "abs", "absolute", "fabs", "sign", "sqrt", "cbrt", "square", "power", "exp", "exp2", "expm1", "log",
        "log2", "log10", "log1p", "sin", "cos", "tan", "arcsin", "arccos", "arctan", "arctan2", "sinh", "cosh",
        "tanh", "arcsinh", "arccosh", "arctanh", "hypot", "deg2rad", "rad2deg", "degrees", "radians", "floor",
        "ceil", "round", "rint", "trunc", "clip", "minimum", "maximum", "fmin", "fmax", "mod", "fmod",
        "copysign", "heaviside", "where", "nan_to_num", "interp",
        # tests and logic
        "isfinite", "isnan", "isinf", "isclose", "allclose", "logical_and", "logical_or", "logical_not",
        "logical_xor", "greater", "less", "equal",
        # reductions and products
        "sum", "mean", "median", "prod", "min", "max", "amin", "amax", "argmin", "argmax", "std", "var",
        "cumsum", "diff", "any", "all", "dot", "vdot", "inner", "outer", "cross", "matmul", "einsum",
        # submodule, whose members are checked on their own
        "linalg",
    }
)  # fmt: skip
LINALG_FUNCTIONS = frozenset({"norm"})
MATH_NAMES = frozenset(name for name in dir(math) if not name.startswith("_"))
# methods and properties of arrays and floats that neither write in place nor reach files
VALUE_ATTRIBUTES = frozenset(
    {
        "shape", "ndim", "size", "T", "real", "imag", "copy", "astype", "item", "tolist", "reshape", "ravel",
        "flatten", "squeeze", "transpose", "sum", "mean", "prod", "min", "max", "argmin", "argmax", "std", "var",
        "cumsum", "clip", "dot", "round", "any", "all", "conjugate", "is_integer",
    }
)  # fmt: skip
FORBIDDEN_NODES = {
    ast.Global: "`global` statements are not allowed",
    ast.Nonlocal: "`nonlocal` statements are not allowed",
    ast.ClassDef: "classes are not allowed; write functions",
    ast.Try: "`try` is not allowed: let an error surface so that it can be fixed",
    ast.With: "`with` is not allowed",
    ast.AsyncFunctionDef: "`async` functions are not allowed",
    ast.AsyncFor: "`async for` is not allowed",
    ast.AsyncWith: "`async with` is not allowed",
    ast.Await: "`await` is not allowed",
    ast.Yield: "`yield` is not allowed; return the reward",
    ast.YieldFrom: "`yield` is not allowed; return the reward",
    ast.Delete: "`del` is not allowed",
}
if hasattr(ast, "TryStar"):  # Python >= 3.11
    FORBIDDEN_NODES[ast.TryStar] = FORBIDDEN_NODES[ast.Try]

RULES = (
    f"Define exactly one top-level function `def {FUNCTION_NAME}(obs, action):` returning a single float; "
    "helper functions of your own are fine.",
    "At the top level write only imports, constants and function definitions.",
    "Import only `numpy as np` and `math` (or names from `math`).",
    "Read the observation only as `obs.<attribute>`, with the attributes listed in the environment description; "
    "treat them as read-only and do not pass `obs` itself to other functions.",
    "Use numpy's numerical functions (np.linalg.norm, np.clip, np.exp, np.tanh, np.dot, ...), math, and plain "
    "Python builtins (abs, min, max, sum, len, range, float, ...); nothing that reads or writes files, prints, "
    "or inspects objects (no open, eval, exec, getattr, globals, names with double underscores).",
    "Do not use classes, try/except, with, global or nonlocal.",
)


@dataclass(frozen=True)
class CheckedProgram:
    """An accepted program: its whole `source`, the target function's own source, what it reads."""

    source: str
    function_name: str
    function_source: str
    obs_attributes: tuple[str, ...]  # attributes of the abstraction it reads, sorted
    numpy_names: tuple[str, ...]  # np.<name> it uses, sorted
    helpers: tuple[str, ...]  # its other top-level functions, in order


class ProgramRejected(ValueError):
    """The program broke the rules; `reasons` are lines like "line 3: ...", and `str()` is the message for the
    LLM."""

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = list(reasons)
        super().__init__(self.message())

    def message(self) -> str:
        listed = "\n".join(f"- {reason}" for reason in self.reasons)
        return f"The reward program was rejected before running, for these reasons:\n{listed}"


def check_program(source: str, attributes: Collection[str], function_name: str = FUNCTION_NAME) -> CheckedProgram:
    """Check `source` against the rules above, `attributes` being the abstraction's attribute names; the accepted
    program, or ProgramRejected listing every problem found."""
    try:
        tree = ast.parse(source)
    except SyntaxError as err:
        where = f" in `{err.text.strip()}`" if err.text and err.text.strip() else ""
        raise ProgramRejected([f"line {err.lineno or 1}: syntax error: {err.msg}{where}"]) from None
    checker = _Checker(frozenset(attributes), function_name)
    target = checker.check_module(tree)
    if checker.reasons:
        ordered = sorted(dict.fromkeys(checker.reasons), key=lambda reason: reason[0])  # stable: by line
        raise ProgramRejected([f"line {line}: {text}" for line, text in ordered])
    assert target is not None
    return CheckedProgram(
        source=source,
        function_name=function_name,
        function_source=ast.get_source_segment(source, target) or "",
        obs_attributes=tuple(sorted(checker.obs_reads)),
        numpy_names=tuple(sorted(checker.numpy_reads)),
        helpers=tuple(checker.helpers),
    )


def _is_dunder(name: str) -> bool:
    return name.startswith("__") or name.endswith("__")


class _Checker:
    """One pass over a module, collecting reasons."""

    def __init__(self, attributes: frozenset[str], function_name: str) -> None:
        self.attributes, self.function_name = attributes, function_name
        self.reasons: list[tuple[int, str]] = []  # (line, text)
        self.obs_reads: set[str] = set()
        self.numpy_reads: set[str] = set()
        self.helpers: list[str] = []
        self.defined: set[str] = set()  # every name the program binds anywhere (a simple, scope-blind check)
        self.obs_bases: set[int] = set()  # ids of the `obs` names read as `obs.<attribute>`

    def reject(self, node: ast.AST, text: str) -> None:
        self.reasons.append((getattr(node, "lineno", 1), text))

    # ------------------------------------------------------------------ the module's shape

    def check_module(self, tree: ast.Module) -> ast.FunctionDef | None:
        targets = []
        for index, statement in enumerate(tree.body):
            if isinstance(statement, ast.FunctionDef):
                if statement.name == self.function_name:
                    targets.append(statement)
                else:
                    self.helpers.append(statement.name)
            elif isinstance(statement, (ast.Import, ast.ImportFrom, ast.Assign, ast.AnnAssign)):
                pass
            elif index == 0 and isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
                pass  # the docstring
            else:
                self.reject(statement, "only imports, constants and function definitions may stand at the top level")
        if not targets:
            self.reasons.append((1, f"no top-level function `def {self.function_name}(obs, action):` was found"))
        for extra in targets[1:]:
            self.reject(extra, f"`{self.function_name}` is defined more than once; define it exactly once")
        if targets:
            self.check_signature(targets[0])
        self.collect_bindings(tree)
        self.obs_bases = {
            id(node.value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "obs"
        }
        for node in ast.walk(tree):
            self.check_node(node)
        return targets[0] if targets else None

    def check_signature(self, function: ast.FunctionDef) -> None:
        args = function.args
        names = tuple(arg.arg for arg in args.args)
        extra = args.posonlyargs or args.kwonlyargs or args.vararg or args.kwarg or args.defaults
        if names != PARAMETERS or extra:
            self.reject(
                function,
                f"the signature must be exactly `def {self.function_name}(obs, action):`, "
                f"got `def {self.function_name}({ast.unparse(args)}):`",
            )

    def collect_bindings(self, tree: ast.Module) -> None:
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                self.defined.add(node.id)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self.defined.add(node.name)
            elif isinstance(node, ast.arg):
                self.defined.add(node.arg)
            elif isinstance(node, ast.alias):
                self.defined.add(node.asname or node.name.partition(".")[0])

    # ------------------------------------------------------------------ node by node

    def check_node(self, node: ast.AST) -> None:
        for kind, text in FORBIDDEN_NODES.items():
            if isinstance(node, kind):
                self.reject(node, text)
        if isinstance(node, ast.Import):
            self.check_import(node)
        elif isinstance(node, ast.ImportFrom):
            self.check_import_from(node)
        elif isinstance(node, ast.Name):
            self.check_name(node)
        elif isinstance(node, ast.Attribute):
            self.check_attribute(node)
        elif isinstance(node, (ast.FunctionDef, ast.Lambda)):
            self.check_function(node)
        elif isinstance(node, ast.arg) and _is_dunder(node.arg):
            self.reject(node, f"the name `{node.arg}` has double underscores; such names are not allowed")
        elif isinstance(node, ast.keyword):
            self.check_keyword(node)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "__" in node.value:
            self.reject(node, "strings containing double underscores are not allowed")
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                self.check_write(target)
        elif isinstance(node, (ast.For, ast.comprehension, ast.NamedExpr)):
            self.check_write(node.target)
        elif isinstance(node, ast.While):
            self.check_while(node)

    def check_import(self, node: ast.Import) -> None:
        for alias in node.names:
            if (alias.name, alias.asname) in {("numpy", "np"), ("math", None)}:
                continue
            written = f"import {alias.name}" + (f" as {alias.asname}" if alias.asname else "")
            self.reject(
                node, f"`{written}` is not allowed; the only imports are `import numpy as np` and `import math`"
            )

    def check_import_from(self, node: ast.ImportFrom) -> None:
        if node.module != "math" or node.level:
            self.reject(
                node,
                f"`from {'.' * node.level}{node.module or ''} import ...` is not allowed; the only imports are "
                "`import numpy as np`, `import math` and `from math import <name>`",
            )
            return
        for alias in node.names:
            if alias.name not in MATH_NAMES:
                self.reject(node, f"`math.{alias.name}` is not a public name of math")

    def check_name(self, node: ast.Name) -> None:
        name = node.id
        if name in FORBIDDEN_CALLS:
            self.reject(node, f"`{name}` is not allowed: it {FORBIDDEN_CALLS[name]}")
        elif _is_dunder(name):
            self.reject(node, f"the name `{name}` has double underscores; such names are not allowed")
        elif isinstance(node.ctx, ast.Load) and name not in self.defined and name not in SAFE_BUILTINS:
            if name in ("np", "numpy", "math"):
                self.reject(node, f"`{name}` is used but not imported; add `import numpy as np` or `import math`")
            else:
                self.reject(
                    node, f"the name `{name}` is not defined (allowed builtins: {', '.join(sorted(SAFE_BUILTINS))})"
                )
        elif isinstance(node.ctx, ast.Store) and name in ("obs", "np", "math"):
            self.reject(node, f"`{name}` must not be rebound")
        elif name == "obs" and isinstance(node.ctx, ast.Load) and id(node) not in self.obs_bases:
            self.reject(node, "use `obs` only as `obs.<attribute>`; do not index it, pass it on or copy it whole")

    def check_attribute(self, node: ast.Attribute) -> None:
        name, base = node.attr, node.value
        if _is_dunder(name) or name.startswith("_"):
            self.reject(node, f"the attribute `.{name}` is not allowed (no names starting with an underscore)")
            return
        if isinstance(base, ast.Name) and base.id == "obs":
            self.check_obs_attribute(node)
        elif isinstance(base, ast.Name) and base.id == "np":
            if name in NUMPY_FUNCTIONS:
                self.numpy_reads.update({name} - {"linalg"})
            else:
                self.reject(
                    node,
                    f"`np.{name}` is not allowed: only numpy's numerical functions are{_close(name, NUMPY_FUNCTIONS)}",
                )
        elif _is_np_linalg(base):
            if name in LINALG_FUNCTIONS:
                self.numpy_reads.add(f"linalg.{name}")
            else:
                self.reject(node, f"`np.linalg.{name}` is not allowed; of np.linalg only `norm` is")
        elif isinstance(base, ast.Name) and base.id == "math":
            if name not in MATH_NAMES:
                self.reject(node, f"`math.{name}` is not a public name of math{_close(name, MATH_NAMES)}")
        elif name not in VALUE_ATTRIBUTES:
            self.reject(
                node,
                f"the attribute `.{name}` is not allowed on values; allowed: {', '.join(sorted(VALUE_ATTRIBUTES))}",
            )

    def check_obs_attribute(self, node: ast.Attribute) -> None:
        if node.attr in self.attributes:
            if isinstance(node.ctx, ast.Load):
                self.obs_reads.add(node.attr)
            return
        close = difflib.get_close_matches(node.attr, sorted(self.attributes), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(f'`obs.{c}`' for c in close)}?" if close else ""
        self.reject(
            node,
            f"`obs.{node.attr}` is not an attribute of the observation{hint} "
            f"(available: {', '.join(sorted(self.attributes))})",
        )

    def check_function(self, node: ast.FunctionDef | ast.Lambda) -> None:
        if isinstance(node, ast.FunctionDef):
            if node.decorator_list:
                self.reject(node, "decorators are not allowed")
            if _is_dunder(node.name):
                self.reject(node, f"the name `{node.name}` has double underscores; such names are not allowed")

    def check_keyword(self, node: ast.keyword) -> None:
        if node.arg is not None and _is_dunder(node.arg):
            self.reject(node, f"the keyword `{node.arg}` has double underscores; such names are not allowed")
        if node.arg == "out":
            self.reject(node, "`out=` is not allowed: compute new values instead of writing into arrays")

    def check_write(self, target: ast.AST) -> None:
        """Assignments must not write into the observation (`obs.x = ...`, `obs.x[0] = ...`)."""
        for node in ast.walk(target):
            if isinstance(node, (ast.Attribute, ast.Subscript)) and isinstance(node.ctx, ast.Store):
                if _roots_at_obs(node):
                    self.reject(node, "the observation is read-only: do not assign to `obs` attributes or their items")
                elif isinstance(node, ast.Attribute):
                    self.reject(node, "assigning to attributes is not allowed; use local variables")

    def check_while(self, node: ast.While) -> None:
        test = node.test
        endless = isinstance(test, ast.Constant) and bool(test.value)
        if endless and not any(
            isinstance(inner, ast.Break) for statement in node.body for inner in ast.walk(statement)
        ):
            self.reject(node, "`while True:` without `break` never ends")


def _is_np_linalg(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "linalg"
        and isinstance(node.value, ast.Name)
        and node.value.id == "np"
    )


def _roots_at_obs(node: ast.AST) -> bool:
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return isinstance(node, ast.Name) and node.id == "obs"


def _close(name: str, choices: Collection[str]) -> str:
    close = difflib.get_close_matches(name, sorted(choices), n=3, cutoff=0.75)
    return f"; did you mean {', '.join(close)}?" if close else ""
