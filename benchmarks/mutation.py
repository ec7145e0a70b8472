"""A small AST mutation tester: does the suite notice when a module's code changes?

Each mutant changes one thing in one module: a comparison flipped (``<`` -> ``<=``,
``==`` -> ``!=``, ``in`` -> ``not in``, ...), an arithmetic operator swapped (``+`` <-> ``-``,
``*`` <-> ``/``, ``**`` -> ``*``, ``//`` -> ``/``), ``and`` <-> ``or``, a ``not`` dropped, a
number changed by one (``n -> n + 1``; ``True`` <-> ``False``), a statement deleted
(replaced by ``pass``), a returned value replaced by ``None``. Docstrings, string
constants, type annotations and ``raise`` messages are left alone.

Every mutant runs the module's own tests (``pytest -x -q``) in a **temporary copy** of the
checkout (never in the working tree), with a time limit: a test failure kills it, a
pass means it survived, running past the limit counts as killed by timeout (a hang that
the suite's own per-test timeout would turn into a failure). The unmutated module is
first run the same way, as a baseline that must pass.

    python benchmarks/mutation.py mnistkit/optimizers/sgd.py tests/test_training.py
    python benchmarks/mutation.py mnistkit/training.py tests/test_training.py \\
        --max-mutants 150 --seed 0 --json benchmarks/results/mutation-training.json

``--max-mutants`` samples that many mutants (seeded) when there are more; the report
says so. ``--list`` prints the mutants without running anything; ``--only N`` runs just
mutant N (to check that a new test kills a survivor). Run it with ``nice``:
it is CPU-heavy.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

COMPARE_SWAP: dict[type, type] = {
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
    ast.In: ast.NotIn, ast.NotIn: ast.In,
}
BINOP_SWAP: dict[type, type] = {
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
    ast.FloorDiv: ast.Div, ast.Pow: ast.Mult, ast.Mod: ast.FloorDiv,
    ast.BitAnd: ast.BitOr, ast.BitOr: ast.BitAnd,
}
SYMBOL = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==",
          ast.NotEq: "!=", ast.Is: "is", ast.IsNot: "is not", ast.In: "in",
          ast.NotIn: "not in", ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/",
          ast.FloorDiv: "//", ast.Pow: "**", ast.Mod: "%", ast.BitAnd: "&", ast.BitOr: "|",
          ast.And: "and", ast.Or: "or"}


@dataclasses.dataclass(frozen=True)
class Mutant:
    """One change: the ``index``-th site found by :func:`sites`, at ``line``."""

    index: int
    line: int
    kind: str
    description: str


def _skipped(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Nodes not worth mutating: inside annotations, docstrings or ``raise`` messages."""
    child, parent = node, parents.get(node)
    while parent is not None:
        if isinstance(parent, (ast.arg, ast.AnnAssign)) and child is getattr(
                parent, "annotation", None):
            return True
        if isinstance(parent, (ast.FunctionDef, ast.AsyncFunctionDef)) and child is parent.returns:
            return True
        if isinstance(parent, ast.Raise):
            return True  # messages; deleting the raise itself is a statement mutant
        if isinstance(parent, ast.JoinedStr):
            return True
        child, parent = parent, parents.get(parent)
    return False


def _is_docstring(stmt: ast.stmt) -> bool:
    """A docstring or a bare ``...`` (deleting either changes nothing)."""
    return (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
            and (isinstance(stmt.value.value, str) or stmt.value.value is Ellipsis))


def sites(tree: ast.Module) -> Iterator[tuple[ast.AST, str, str, object]]:
    """Every mutation site as ``(node, kind, description, payload)``, in a fixed order."""
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    for node in ast.walk(tree):
        if _skipped(node, parents):
            continue
        if isinstance(node, ast.Compare):
            for i, op in enumerate(node.ops):
                new = COMPARE_SWAP.get(type(op))
                if new:
                    yield node, "compare", f"{SYMBOL[type(op)]} -> {SYMBOL[new]}", (i, new)
        elif isinstance(node, (ast.BinOp, ast.AugAssign)):
            new = BINOP_SWAP.get(type(node.op))
            if new:
                kind = "augassign" if isinstance(node, ast.AugAssign) else "arith"
                yield node, kind, f"{SYMBOL[type(node.op)]} -> {SYMBOL[new]}", new
        elif isinstance(node, ast.BoolOp):
            new = ast.Or if isinstance(node.op, ast.And) else ast.And
            yield node, "boolop", f"{SYMBOL[type(node.op)]} -> {SYMBOL[new]}", new
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):
            yield node, "unary", f"drop {'not' if isinstance(node.op, ast.Not) else '-'}", None
        elif isinstance(node, ast.Constant) and type(node.value) in (int, float, bool):
            if isinstance(node.value, bool):
                yield node, "constant", f"{node.value} -> {not node.value}", not node.value
            else:
                yield node, "constant", f"{node.value!r} -> {node.value + 1!r}", node.value + 1
        elif isinstance(node, ast.Return) and node.value is not None and not (
                isinstance(node.value, ast.Constant) and node.value.value is None):
            yield node, "return", "return None", None
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.For, ast.While,
                             ast.If, ast.With, ast.Try)):
            for field in ("body", "orelse", "finalbody"):
                for stmt in getattr(node, field, []) or []:
                    if _is_docstring(stmt) or isinstance(stmt, ast.Pass):
                        continue
                    text = ast.unparse(stmt).splitlines()[0][:60]
                    yield stmt, "delete", f"delete `{text}`", (node, field)


def mutants(source: str) -> list[Mutant]:
    """The mutants of a module's source."""
    tree = ast.parse(source)
    return [Mutant(i, getattr(node, "lineno", 0), kind, text)
            for i, (node, kind, text, _) in enumerate(sites(tree))]


def apply(source: str, index: int) -> str:
    """The module's source with mutant ``index`` applied."""
    tree = ast.parse(source)
    for i, (node, kind, _, payload) in enumerate(sites(tree)):
        if i != index:
            continue
        if kind == "compare":
            at, new = payload
            node.ops[at] = new()
        elif kind in ("arith", "augassign", "boolop"):
            node.op = payload()
        elif kind == "unary":
            parent = next(p for p in ast.walk(tree) for f, v in ast.iter_fields(p)
                          if v is node or (isinstance(v, list) and any(x is node for x in v)))
            _replace(parent, node, node.operand)
        elif kind == "constant":
            node.value = payload
        elif kind == "return":
            node.value = ast.Constant(None)
        elif kind == "delete":
            owner, field = payload
            body = getattr(owner, field)
            body[body.index(node)] = ast.Pass()
        ast.fix_missing_locations(tree)
        return ast.unparse(tree)
    raise IndexError(index)


def _replace(parent: ast.AST, old: ast.AST, new: ast.AST) -> None:
    for field, value in ast.iter_fields(parent):
        if value is old:
            setattr(parent, field, new)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if item is old:
                    value[i] = new


def copy_checkout(target: Path) -> Path:
    """A copy of the checkout's tracked files (no .git, .venv, build output)."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                            "--exclude-standard"], cwd=REPO, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = REPO / name
        if src.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target / name)
    return target


def run_tests(copy_root: Path, tests: list[str], timeout: float,
              extra: list[str]) -> tuple[str, float]:
    """``killed``, ``survived`` or ``timeout`` and the seconds taken."""
    env = {**os.environ, "PYTHONPATH": str(copy_root), "PYTHONDONTWRITEBYTECODE": "1"}
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                             *extra, *tests], cwd=copy_root, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.monotonic() - start
    finally:  # also when this script is stopped: leave no test run behind
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return ("survived" if code == 0 else "killed"), time.monotonic() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("module", help="the module to mutate, e.g. mnistkit/optimizers/sgd.py")
    parser.add_argument("tests", nargs="+", help="its test files (run with pytest -x -q)")
    parser.add_argument("--max-mutants", type=int, default=0, help="sample this many (0: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample")
    parser.add_argument("--timeout", type=float, default=0,
                        help="seconds per mutant (default: 3x the baseline + 30)")
    parser.add_argument("--pytest-arg", action="append", default=[],
                        help="extra pytest argument, e.g. -k 'not slow' (repeatable)")
    parser.add_argument("--json", type=Path, help="write every mutant's outcome here")
    parser.add_argument("--list", action="store_true", help="list the mutants and stop")
    parser.add_argument("--only", type=int, action="append", default=[],
                        help="run only mutant INDEX (from --list; repeatable), e.g. to check "
                        "that a new test kills a survivor")
    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C: the child test run is killed, the copy removed.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    source = (REPO / args.module).read_text()
    found = mutants(source)
    chosen = found
    if args.only:
        chosen = [m for m in found if m.index in set(args.only)]
    elif args.max_mutants and len(found) > args.max_mutants:
        chosen = sorted(random.Random(args.seed).sample(found, args.max_mutants),
                        key=lambda m: m.index)
    if args.list:
        for m in chosen:
            print(f"{m.index:4d}  line {m.line:4d}  {m.kind:9s}  {m.description}")
        print(f"{len(chosen)} of {len(found)} mutants")
        return 0

    with tempfile.TemporaryDirectory(prefix="mnistkit-mutation-") as tmp:
        root = copy_checkout(Path(tmp))
        target = root / args.module
        probe = subprocess.run([sys.executable, "-c", "import mnistkit; print(mnistkit.__file__)"],
                               cwd=root, env={**os.environ, "PYTHONPATH": str(root)},
                               capture_output=True, text=True, check=True).stdout.strip()
        if not probe.startswith(str(root)):
            raise SystemExit(f"the copy is not the mnistkit imported ({probe}); stopping")
        # Baseline: the unmutated module, unparsed the way mutants are.
        target.write_text(ast.unparse(ast.parse(source)))
        outcome, baseline = run_tests(root, args.tests, 1800, args.pytest_arg)
        if outcome != "survived":
            raise SystemExit(f"the tests fail without any mutation ({outcome}); stopping")
        timeout = args.timeout or 3 * baseline + 30
        print(f"{args.module}: {len(chosen)} of {len(found)} mutants, baseline {baseline:.1f} s, "
              f"timeout {timeout:.0f} s", flush=True)
        results = []
        for n, m in enumerate(chosen, 1):
            target.write_text(apply(source, m.index))
            outcome, seconds = run_tests(root, args.tests, timeout, args.pytest_arg)
            results.append({**dataclasses.asdict(m), "outcome": outcome,
                            "seconds": round(seconds, 2)})
            if outcome == "survived":
                print(f"  SURVIVED  line {m.line:4d}  {m.kind:9s}  {m.description}", flush=True)
            elif n % 10 == 0:
                print(f"  ... {n}/{len(chosen)}", flush=True)
        target.write_text(source)

    counts = {k: sum(r["outcome"] == k for r in results) for k in ("killed", "timeout",
                                                                    "survived")}
    total = len(results)
    score = (counts["killed"] + counts["timeout"]) / total if total else 1.0
    sampled = ""
    if args.only:
        sampled = f" (chosen with --only, of {len(found)})"
    elif total < len(found):
        sampled = f" (a seeded sample of {total} of {len(found)})"
    print(f"{args.module}: {total} mutants{sampled}: killed {counts['killed']}, timeout "
          f"{counts['timeout']}, survived {counts['survived']}: score {score:.1%}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "module": args.module, "tests": args.tests, "pytest_args": args.pytest_arg,
            "found": len(found), "run": total, "seed": args.seed, "timeout": timeout,
            "baseline_seconds": round(baseline, 2), **counts, "score": round(score, 4),
            "mutants": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
