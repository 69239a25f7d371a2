"""Write the generated parts of the reference pages from the code, or check they are current.

    python docs/generate.py           rewrite them
    python docs/generate.py --check   exit 1 if a page is stale (``make docs`` runs this)

Each generated part sits in a page between ``<!-- generated: NAME -->`` and
``<!-- end generated: NAME -->``; the prose around it is written by hand. The parts:

- ``settings``: one heading per property of ``chunky_redis.conf.Settings``: its type (from the
  annotation), its default (the property's value when the setting is unset) and its docstring;
- ``error-classes``: every ``ChunkyError`` subclass with its status, code and default detail,
  and the other codes the package raises it with (found in the source);
- ``checks``: every system check id of ``chunky_redis/checks.py`` with the message and hint it
  gives for an example of a bad setting (the checks are run to get them).

tests/test_docs.py fails when a page is stale, a setting has no docstring, or a check id has
no example here.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import inspect
import os
import pkgutil
import re
import sys
from collections.abc import Callable, Iterator
from datetime import timedelta
from importlib import import_module
from pathlib import Path
from typing import Any
from unittest import mock

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
PACKAGE = ROOT / "chunky_redis"
PREFIX = "CHUNKY_REDIS_"

# An example of a bad configuration for each check id: settings to override (without the
# prefix), patches (target: replacement) with what they stand for (when). The checks run under
# them and the page shows what they say.
CHECK_EXAMPLES: dict[str, dict[str, Any]] = {
    "chunky_redis.E001": {"settings": {"CHECKSUM_ALGORITHM": "crc32"}},
    "chunky_redis.E050": {
        "settings": {"CHECKSUM_ALGORITHM": "sha256"},
        "when": "with `chunky_redis.chunked_upload_urls` mounted",
    },
    "chunky_redis.W001": {
        "patch": {"chunky_redis.checks.incremental_available": lambda algorithm: False},
        "when": "libcrypto without the low-level digest functions",
    },
    "chunky_redis.E002": {"settings": {"UPLOAD_DIR": "", "MEDIA_ROOT": ""}},
    "chunky_redis.E003": {"settings": {"EXPIRATION": 0}},
    "chunky_redis.E004": {"settings": {"MAX_BYTES": 0}},
    "chunky_redis.E005": {"settings": {"REDIS_ALIAS": "default"}},
    "chunky_redis.E006": {"settings": {"FINAL_STORAGE": "myproject.storages.Missing"}},
    "chunky_redis.E007": {"settings": {"BLOCK_SIZE": 0}},
    "chunky_redis.E080": {"settings": {"SYNC_EVERY": -1}},
    "chunky_redis.E008": {"settings": {"FINAL_NAME_TEMPLATE": "uploads/{filename}"}},
    "chunky_redis.E009": {"settings": {"MAX_UPLOADS_IN_FLIGHT": -1}},
    "chunky_redis.E010": {
        "settings": {"REDIS_URL": None, "REDIS_ALIAS": None},
        "patch": {"chunky_redis.runtime.installed": lambda module: module != "fakeredis"},
        "when": "fakeredis not installed",
    },
    "chunky_redis.E011": {
        "settings": {"REDIS_ALIAS": "default"},
        "patch": {"chunky_redis.runtime.installed": lambda module: module != "django_redis"},
        "when": "django-redis not installed",
    },
    "chunky_redis.W002": {"settings": {"REDIS_URL": None, "REDIS_ALIAS": None, "DEBUG": False}},
    "chunky_redis.E020": {"settings": {"REDIS_URL": "redis+cluster://node1:6379/1"}},
    "chunky_redis.E021": {"settings": {"KEY_PREFIX": "{chunky}"}},
    "chunky_redis.E022": {"settings": {"WAIT_REPLICAS": -1}},
    "chunky_redis.E060": {"settings": {"CHUNK_STORAGE": "nfs"}},
    "chunky_redis.E061": {"settings": {"CHUNK_STORAGE": "s3", "S3_PART_SIZE": 1 << 20}},
    "chunky_redis.E062": {"settings": {"CHUNK_STORAGE": "s3", "FINAL_STORAGE": None}},
    "chunky_redis.E070": {
        "settings": {"METRICS": True},
        "patch": {"chunky_redis.checks.installed": lambda module: module != "prometheus_client"},
        "when": "prometheus_client not installed",
    },
    "chunky_redis.E071": {"settings": {"METRICS_WORKER_PORT": 70000}},
    "chunky_redis.E072": {"settings": {"METRICS_TOKEN": ""}},
    "chunky_redis.E073": {
        "settings": {"METRICS": True},
        "patch": {"chunky_redis.checks.multiproc_dir": lambda: "/nonexistent/prometheus"},
        "when": "PROMETHEUS_MULTIPROC_DIR names no directory",
    },
}

# Django's own settings an example needs set to itself (not CHUNKY_REDIS_-prefixed).
_DJANGO_SETTINGS = {"MEDIA_ROOT", "DEBUG", "CACHES", "STORAGES"}


def setup_django() -> None:
    """Configure Django with the test settings when run as a script (tests have it already)."""
    import django
    from django.conf import settings

    if not settings.configured:
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
        django.setup()


def _md(text: str) -> str:
    """Docstrings use reStructuredText literals; the pages are Markdown."""
    return text.replace("``", "`")


# -- settings ---------------------------------------------------------------------------------


class _UnsetSettings:
    """Django settings with no CHUNKY_REDIS_* set; any other setting reads as its own name, so a
    default computed from another setting (UPLOAD_DIR from MEDIA_ROOT) shows where it comes from."""

    def __init__(self) -> None:
        self.read: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        if name.startswith(PREFIX):
            raise AttributeError(name)
        self.read.add(name)
        return name


def settings_properties() -> list[tuple[str, property]]:
    from chunky_redis.conf import Settings

    return [(name, value) for name, value in vars(Settings).items() if isinstance(value, property)]


def _duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds % size == 0 and seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{value.total_seconds()} seconds"


def _default(name: str, prop: property) -> str:
    from chunky_redis import conf as conf_module

    unset = _UnsetSettings()
    with mock.patch.object(conf_module, "settings", unset):
        value = prop.fget(conf_module.Settings())  # type: ignore[misc]
    if isinstance(value, timedelta):
        return _duration(value)
    if isinstance(value, str) and unset.read:
        return f"`{value}`"  # computed from the Django settings it names
    if isinstance(value, str):
        return f'`"{value}"`'
    return f"`{value!r}`"


def _type(prop: property) -> str:
    annotation = inspect.signature(prop.fget).return_annotation  # type: ignore[arg-type]
    annotation = getattr(annotation, "__name__", annotation)
    if annotation == "timedelta":
        return "`timedelta` or a number of seconds"
    return f"`{annotation}`"


def missing_docstrings() -> list[str]:
    return [name for name, prop in settings_properties() if not (prop.__doc__ or "").strip()]


def render_settings() -> str:
    parts = []
    for name, prop in settings_properties():
        doc = inspect.cleandoc(prop.__doc__ or "(undocumented)")
        parts.append(
            f"## `{PREFIX}{name}`\n\n{_type(prop)}, default {_default(name, prop)}.\n\n{_md(doc)}\n"
        )
    return "\n".join(parts)


# -- errors -----------------------------------------------------------------------------------


def _import_package() -> None:
    import chunky_redis

    for info in pkgutil.walk_packages(chunky_redis.__path__, "chunky_redis."):
        if ".management" in info.name or info.name.startswith("chunky_redis.client"):
            continue
        import_module(info.name)


def error_classes() -> list[type]:
    from chunky_redis.exceptions import ChunkyError

    _import_package()
    found: list[type] = []
    todo = [ChunkyError]
    while todo:
        cls = todo.pop(0)
        found.append(cls)
        todo.extend(sorted(cls.__subclasses__(), key=lambda c: c.__name__))
    return sorted(found, key=lambda c: (chunky_status(c), c.default_code))


def chunky_status(cls: type) -> int:
    """The status the chunky dialect answers an error class with (the core's carry none)."""
    from chunky_redis.protocols.chunky import STATUSES

    for klass in cls.__mro__:
        own = vars(klass).get("status_code")
        if isinstance(own, int):
            return int(own)
        if klass in STATUSES:
            return int(STATUSES[klass])
    return 400


def raised_codes() -> dict[str, set[str]]:
    """``code=`` literals the package passes to an exception, by the class called."""
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            for keyword in node.keywords:
                if keyword.arg == "code" and isinstance(keyword.value, ast.Constant):
                    found.setdefault(called, set()).add(keyword.value.value)
    return found


def all_error_codes() -> set[str]:
    codes = {cls.default_code for cls in error_classes()}
    for extra in raised_codes().values():
        codes |= extra
    return codes


def render_errors() -> str:
    raised = raised_codes()
    rows = [
        "| status | code | exception | default detail | also raised with code |",
        "|---|---|---|---|---|",
    ]
    for cls in error_classes():
        status = chunky_status(cls)
        also = ", ".join(
            f"`{code}`" for code in sorted(raised.get(cls.__name__, set()) - {cls.default_code})
        )
        rows.append(
            f"| {status} | `{cls.default_code}` | `{cls.__module__}.{cls.__name__}` "
            f"| {cls.default_detail} | {also} |"
        )
    return "\n".join(rows) + "\n"


# -- system checks ----------------------------------------------------------------------------


def check_ids_in_source() -> set[str]:
    """Every check id the package's source names, whole or as the tail given to a helper."""
    ids = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                match = re.fullmatch(r"(?:chunky_redis\.)?([EWI]\d{3})", node.value)
                if match:
                    ids.add("chunky_redis." + match.group(1))
    return ids


@contextlib.contextmanager
def _example(example: dict[str, Any]) -> Iterator[None]:
    from django.test import override_settings

    overrides = {}
    for name, value in example.get("settings", {}).items():
        overrides[name if name in _DJANGO_SETTINGS else PREFIX + name] = value
    # A baseline with nothing wrong, so that each example shows its own message only.
    base = {PREFIX + "REDIS_URL": "redis://127.0.0.1:6379/0", PREFIX + "REDIS_ALIAS": None}
    patches = [mock.patch(target, fn) for target, fn in example.get("patch", {}).items()]
    with override_settings(**{**base, **overrides}), contextlib.ExitStack() as stack:
        for patch in patches:
            stack.enter_context(patch)
        yield


def _level(check_id: str) -> str:
    return {"E": "Error", "W": "Warning", "I": "Info"}[check_id.split(".")[1][0]]


def _example_settings(example: dict[str, Any]) -> str:
    shown = []
    for name, value in example.get("settings", {}).items():
        shown.append(f"{name if name in _DJANGO_SETTINGS else PREFIX + name} = {value!r}")
    shown = [f"`{s}`" for s in shown]
    if example.get("when"):
        shown.append(example["when"])
    return "; ".join(shown)


def render_checks() -> str:
    from chunky_redis.checks import check_settings

    def order(check_id: str) -> tuple[int, str]:
        return (int(check_id[-3:]), check_id)

    parts = []
    for check_id in sorted(CHECK_EXAMPLES, key=order):
        example = CHECK_EXAMPLES[check_id]
        with _example(example):
            messages = [m for m in check_settings() if m.id == check_id]
        if not messages:
            raise SystemExit(f"{check_id}: its example in docs/generate.py no longer triggers it")
        message = messages[0]
        hint = f"\n\nHint: {message.hint}" if message.hint else ""
        parts.append(
            f"## `{check_id}`\n\n{_level(check_id)}. For example with {_example_settings(example)}:\n\n"
            f"```text\n{message.msg}{hint}\n```\n"
        )
    return "\n".join(parts)


# -- pages ------------------------------------------------------------------------------------

PARTS: dict[str, tuple[str, Callable[[], str]]] = {
    "settings": ("reference/settings.md", render_settings),
    "error-classes": ("reference/errors.md", render_errors),
    "checks": ("reference/checks.md", render_checks),
}


def _region(name: str) -> re.Pattern[str]:
    return re.compile(
        rf"(<!-- generated: {re.escape(name)} -->\n).*?(<!-- end generated: {re.escape(name)} -->)",
        re.DOTALL,
    )


def rendered_page(name: str) -> tuple[Path, str, str]:
    """The page holding part ``name``, its text now, and its text with the part regenerated."""
    page, render = PARTS[name]
    path = DOCS / page
    text = path.read_text()
    pattern = _region(name)
    if not pattern.search(text):
        raise SystemExit(f"{page}: the markers of the generated part {name!r} are missing")
    body = render()
    note = "<!-- Written by docs/generate.py from the code: edit the code, then run it. -->\n\n"
    new = pattern.sub(lambda m: m.group(1) + note + body + "\n" + m.group(2), text)
    return path, text, new


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="fail if a page is stale; write nothing"
    )
    args = parser.parse_args(argv)
    setup_django()
    stale = []
    for name in PARTS:
        path, old, new = rendered_page(name)
        if old != new:
            stale.append(str(path.relative_to(ROOT)))
            if not args.check:
                path.write_text(new)
    undocumented = missing_docstrings()
    if undocumented:
        print(f"settings without a docstring in chunky_redis/conf.py: {', '.join(undocumented)}")
        return 1
    if stale and args.check:
        print(f"stale: {', '.join(stale)}; run python docs/generate.py")
        return 1
    for path in stale:
        print(f"rewrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
