"""The package's one error hierarchy: every error a user can cause or meet
is an :class:`ESGError`, so the command line catches one type and prints
one line (exit 2). Each layer has its subclass, in its own ``errors``
module or beside its code:

- ``model.ModelError``, ``planner.PlannerError``, ``control.ControlError``
  (pure decision code: a value outside what it can use);
- ``limits.LimitError`` (a number outside its documented range);
- ``loaders.LoadError``, ``sim.workload.WorkloadError``,
  ``scaler.settings.ScalerSettingsError``, ``profiler.run.ProfileError``
  (files, workloads, settings);
- ``local.platform.PlatformError``, ``sim.report.PlotsUnavailable``
  (the machine: a function that cannot start, no matplotlib);
- ``router.router.StageFailed`` (a stage's call failed; the router turns
  it into 502/504/429).
- ``scaler.actuators.errors.ApiError`` (the platform's API: ``NotFound``,
  ``Conflict``, ``Invalid``, ``Forbidden``, ``Unavailable``, mapped from
  the kubernetes client's ``ApiException``, urllib's ``HTTPError`` or no
  answer; the actuators report them as changes of kind ``gone``/``error``;
  ``Unreadable``: an answer whose record says nothing believable, such as
  a HAMi annotation).

The subclasses also keep the standard type they always were (``ValueError``
for bad values, ``RuntimeError`` for the machine), so ``except ValueError``
still works. The function runtime (``esg_plugin.runtime``) is
self-contained — a function's image holds it alone — and keeps its own
``SettingsError``; HTTP errors are answered, never raised, across
processes.
"""


class ESGError(Exception):
    """An error of the ESG plugin (see the module for its subclasses)."""
