"""One base for every error humback raises on purpose; the class decides the command's exit code.

- `HumbackError` (exit 2): the input, the recipe, a path or a model name is wrong; the message says where
  and how to fix it. Rerunning the same command fails the same way.
- `EnvironmentFault` (exit 3): something outside the input failed (a server went away, another process
  holds the run); finished work is kept and the same command resumes.
- `budget.BudgetStop` (exit 4): a stage reached a limit of the config's `budget`; finished work is kept and
  the same command with the limit raised continues.

Anything else is a bug: the command line prints its traceback and exits 1.
"""

from __future__ import annotations


class HumbackError(Exception):
    """A problem with what was asked; the message names the place and the fix."""

    exit_code = 2


class EnvironmentFault(HumbackError):
    """A problem outside the input; rerunning the same command later resumes."""

    exit_code = 3
