"""The README's "Try it by hand" block, run literally in a fresh shell (a clean environment, the
repository as working directory); only its sandbox directory is a fresh one instead of /tmp/sbx."""
from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def manual_block() -> str:
    text = (REPO / "README.md").read_text()
    found = re.search(r"<!-- manual-block -->\n```\n(.*?)```", text, re.S)
    assert found, "README.md has no manual block"
    return found.group(1)


def test_the_readme_manual_block_works_in_a_fresh_shell(tmp_path):
    sbx = tmp_path / "sbx"
    script = manual_block().replace("/tmp/sbx", str(sbx))
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(tmp_path),
           "LANG": "C.UTF-8"}
    proc = subprocess.Popen(["bash", "-e", "-c", script], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        subprocess.run(["pkill", "-f", str(sbx)], check=False)  # anything the block left behind
    assert proc.returncode == 0, out[-4000:]
    assert "sandbox up" in out and "COMPLETED" in out, out[-4000:]
    assert "c01: ROLLED_BACK" in out or "ROLLED_BACK" in out, out[-4000:]
    assert "store kept in" in out and "Traceback" not in out, out[-4000:]
    # The last command: status after the sandbox is gone still lists the batch, from the kept store.
    assert out.rstrip().splitlines()[-1].strip() and "batch " in out.split("store kept in", 1)[1], out[-2000:]
    assert not (sbx / "sandbox.json").exists() and (sbx / "bgqueue.sqlite").exists()
