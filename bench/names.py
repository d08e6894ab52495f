"""Names that become one component of a path: suites (``results/<suite>/``), baselines
(``results/baselines/<name>/``).

Such a name is one safe path component: letters, digits, ``.``, ``_`` and ``-``, starting with a
letter or digit, so that it can never climb out of its directory (``..``, ``/``), hide (a
leading ``.``), or be found again under another spelling. Torch-free.
"""

import re

NAME_RULE = "letters, digits, '.', '_' and '-', starting with a letter or digit, at most 100"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def is_path_name(value: object) -> bool:
    """Whether ``value`` is one safe path component (the rule above)."""
    return isinstance(value, str) and _NAME.fullmatch(value) is not None
