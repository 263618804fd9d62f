"""The public names of ``import watchkeeper``: loaded on first use, and never replaced by
the submodule of the same name (``deploy``, ``diff``, ``profile``) whatever was imported
first — a test run once failed on ``wk.deploy`` being the module after the CLI's import."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_submodule_imported_first_does_not_replace_the_function_of_its_name() -> None:
    out = run("""
        import watchkeeper.cli, watchkeeper.profiles.core, watchkeeper.suite.diff  # first
        import watchkeeper as wk
        print(all(callable(f) and not isinstance(f, type(wk)) for f in
                  (wk.deploy, wk.diff, wk.profile, wk.rollback)))
        from watchkeeper.suite.deploy import call  # the submodules are still there
        print(callable(call))
    """)
    assert out.split() == ["True", "True"]


def test_the_sdk_import_stays_light() -> None:
    out = run("""
        import sys
        import watchkeeper.sdk
        print(sorted(m for m in ("pandas", "scipy", "sqlalchemy") if m in sys.modules))
    """)
    assert out == "[]"
