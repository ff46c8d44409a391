"""Every command's help works with only the core dependencies; `import dtx` stays light."""

import subprocess
import sys

import pytest
from click.testing import CliRunner

from dtx.cli import main


def test_import_dtx_is_light():
    code = "import sys, dtx; print(sorted(m for m in ('torch', 'transformers', 'onnxruntime', 'tensorrt') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


@pytest.mark.parametrize("command", [[], *[[name] for name in main.commands]])
def test_help(command):
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
