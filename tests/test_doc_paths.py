"""Every repository path a document or a comment names exists: README, MODEL_CARD, docs/,
firmware/*.md and the sources' comments and docstrings. Build outputs, run folders and
patterns (`*`, `<...>`, `{...}`, `DIR`) are not paths to check."""
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEXT = (".md", ".py", ".cc", ".cpp", ".h", ".c", ".S", ".ld", ".toml", ".ini", ".json", ".txt")
PATH = re.compile(r"(?<![\w./$-])((?:model|quantize|firmware|host|tests|docs|\.ci)/[\w./-]*[\w])")
BUILD_OUTPUTS = ("firmware/build/", "firmware/tests/build/")


def named_paths():
    files = subprocess.run(["git", "-C", str(ROOT), "ls-files"], capture_output=True, text=True,
                           check=True).stdout.split()
    for name in files:
        if not name.endswith(TEXT) or name.endswith(".json") and "report" in name:
            continue  # generated reports record the paths of their day
        text = (ROOT / name).read_text(errors="replace")
        for line_no, line in enumerate(text.splitlines(), 1):
            for m in PATH.finditer(line):
                path = m.group(1).rstrip(".")
                after = line[m.end():m.end() + 2]
                if (after[:1] in ("*", "<", "{", "\\") or after in (".*", ".{", ".<")
                        or any(c in path for c in "*<>{}") or "DIR" in path):
                    continue  # a pattern (x.*, x{a,b}), a regular expression, a placeholder
                yield name, line_no, path


def test_every_named_path_exists():
    missing = [f"{name}:{line}: {path}" for name, line, path in named_paths()
               if not (ROOT / path).exists() and not (path + "/").startswith(BUILD_OUTPUTS)]
    assert not missing, "paths that do not exist:\n" + "\n".join(missing)
