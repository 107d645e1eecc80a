"""Count the lines of a source folder: total, and code lines (no blank lines, comments or docstrings).

    python scripts/count_lines.py boxloss/boxes/kernels
    python scripts/count_lines.py boxloss/boxes/fused --rev aff33d3^      # the folder at a git revision

Python files (.py) drop comments and docstrings by tokenizing (C++ kept in a multi-line string, as the
old kernels kept theirs, is counted as C++); C/C++ files (.h, .cpp) drop `//` lines
and trailing `//` comments (block comments are not used in this project). Prints one row per file and
the totals, which is how docs/benchmarks.md compares the kernel folders.
"""

import argparse
import io
import subprocess
import sys
import tokenize
from pathlib import Path

SUFFIXES = (".py", ".h", ".cpp")


def python_code_lines(text: str) -> int:
    """Lines holding a token other than a comment, a docstring or layout."""
    lines, previous = set(), tokenize.NEWLINE
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        layout = (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.COMMENT,
                  tokenize.ENDMARKER)
        if tok.type in layout:
            if tok.type in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
                previous = tok.type
            continue
        # a string that starts a statement is a docstring (or a bare string statement)
        if tok.type == tokenize.STRING and previous in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
            pass
        elif tok.type == tokenize.STRING and tok.end[0] > tok.start[0]:
            # a multi-line string: embedded source (the old kernels kept their C++ in strings) counts as that
            # source does, without its blank and `//` lines
            for k, line in enumerate(tok.string.splitlines()):
                if k == 0 or (line.strip() and not line.strip().startswith("//")):
                    lines.add(tok.start[0] + k)
        else:
            lines.update(range(tok.start[0], tok.end[0] + 1))
        previous = tok.type
    return len(lines)


def cpp_code_lines(text: str) -> int:
    return sum(1 for line in text.splitlines() if line.strip() and not line.strip().startswith("//"))


def files_at(folder: str, rev: str | None) -> dict[str, str]:
    """{path: text} of the source files under `folder`, in the work tree or at git revision `rev`."""
    if rev is None:
        return {str(p): p.read_text() for p in sorted(Path(folder).rglob("*")) if p.suffix in SUFFIXES}
    names = subprocess.run(["git", "ls-tree", "-r", "--name-only", rev, folder], check=True, capture_output=True,
                           text=True).stdout.split()
    return {name: subprocess.run(["git", "show", f"{rev}:{name}"], check=True, capture_output=True, text=True).stdout
            for name in names if name.endswith(SUFFIXES)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder")
    ap.add_argument("--rev", default=None, help="a git revision to read the folder at (default: the work tree)")
    args = ap.parse_args(argv)
    try:
        files = files_at(args.folder, args.rev)
    except subprocess.CalledProcessError as e:
        print(f"error: git could not read {args.folder} at {args.rev}: {e.stderr.strip()}", file=sys.stderr)
        return 2
    if not files:
        print(f"error: no {'/'.join(SUFFIXES)} files under {args.folder}", file=sys.stderr)
        return 2
    total = code = 0
    for name, text in files.items():
        n = len(text.splitlines())
        c = python_code_lines(text) if name.endswith(".py") else cpp_code_lines(text)
        total, code = total + n, code + c
        print(f"{n:6d} {c:6d}  {name}")
    print(f"{total:6d} {code:6d}  total lines, code lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
