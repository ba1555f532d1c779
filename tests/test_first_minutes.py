"""A new user's first ten minutes (issue 21): fast commands, errors at the user's own words,
a header and progress before and during work, run folders that never overwrite each other."""
import subprocess
import sys

from conftest import ROOT

# In a fresh interpreter: run the CLI, then say whether torch got imported.
_PROBE = """
import sys
from netgraph.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as e:
    code = e.code
print("TORCH" if "torch" in sys.modules else "NO-TORCH", code)
"""


def _probe(*argv, cwd=ROOT):
    done = subprocess.run([sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True,
                          cwd=cwd)
    return done.stdout.strip().splitlines()[-1], done.stderr


def test_help_version_and_a_recipe_typo_import_no_torch(tmp_path):
    assert _probe("--help")[0] == "NO-TORCH 0"
    assert _probe("train", "--help")[0] == "NO-TORCH 0"
    assert _probe("--version")[0] == "NO-TORCH 0"
    typo = tmp_path / "typo.yaml"
    typo.write_text("netwrok:\n  fc: {op: linear, out: 10}\n")
    line, err = _probe("train", str(typo))
    assert line == "NO-TORCH 2" and "unknown section 'netwrok'" in err
