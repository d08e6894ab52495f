"""How cases are told apart in tables, progress lines and comparisons: the settings that vary
across them. Torch-free."""

from typing import Any

from bench.spec.choices import RUN_LENGTH_KEYS


def varying_keys(configs: list[dict[str, Any]]) -> list[str]:
    """The measured settings (run-length keys aside) that take more than one value across
    ``configs``, in the order they first appear. A key varies when it takes two values other
    than None: workload-specific keys are None on the other workloads, and that alone tells
    nothing the workload does not."""
    keys = list(dict.fromkeys(k for config in configs for k in config if k not in RUN_LENGTH_KEYS))
    return [k for k in keys if len({repr(c[k]) for c in configs if c.get(k) is not None}) > 1]


def case_labels(configs: dict[str, dict[str, Any]]) -> dict[str, str]:
    """A short label per case id: the settings that vary across ``configs`` (case id -> config),
    those that do not apply to a case left out; the workload and size where nothing varies."""
    configs = {case_id: flat_config(config) for case_id, config in configs.items()}
    shown = varying_keys(list(configs.values())) or ["workload", "model_size"]
    return {
        case_id: " ".join(f"{k}={config.get(k)}" for k in shown if config.get(k) is not None)
        for case_id, config in configs.items()
    }


def flat_config(config: dict[str, Any]) -> dict[str, Any]:
    """A config with each of its ``workload_args`` as a key of its own, ``workload_args.hidden``:
    how labels and report columns show them (an axis of the suite is one argument)."""
    args = config.get("workload_args") or {}
    flat = {key: value for key, value in config.items() if key != "workload_args"}
    return {**flat, **{f"workload_args.{key}": value for key, value in args.items()}}
