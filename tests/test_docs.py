"""The documentation cannot drift from the code.

- Every HTTP example of a protocol page is replayed against the app, in order, and must get the
  status, headers and JSON body the page shows.
- The generated parts of the reference pages (settings, exception classes, system checks) must be
  what docs/generate.py writes from the code now; every setting has a docstring, every check id an
  example, and the error table names every code the package sends.
"""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.test import Client

DOCS = Path(__file__).resolve().parent.parent / "docs"
PROTOCOL_PAGES = sorted((DOCS / "protocols").glob("*.md"))
HTTP_BLOCK = re.compile(r"^```http\n(.*?)^```$", re.MULTILINE | re.DOTALL)
UPLOAD_ID = re.compile(r"\b[0-9a-f]{32}\b")
ISO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
# Values that differ on every run: the page's example need only be of the same kind.
TIMES = {"expires", "created", "completed"}
TIME_HEADERS = {"Upload-Expires"}  # an RFC 9110 HTTP-date
HTTP_DATE = re.compile(r"^[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT$")
ANY = "…"


def load_generator():
    spec = importlib.util.spec_from_file_location("docs_generate", DOCS / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- the protocol examples --------------------------------------------------------------------


@dataclass
class Message:
    start: str
    headers: dict[str, str]
    body: str
    line: int


@dataclass
class Example:
    request: Message
    response: Message


def _message(block: str, line: int) -> Message:
    head, _, body = block.partition("\n\n")
    start, *header_lines = head.strip("\n").split("\n")
    headers = {}
    for header in header_lines:
        name, _, value = header.partition(":")
        headers[name.strip()] = value.strip()
    return Message(start, headers, body[:-1] if body.endswith("\n") else body, line)


def parse_examples(text: str) -> list[Example]:
    """Pairs of ```http blocks: a request, then its response."""
    messages = [
        _message(m.group(1), text.count("\n", 0, m.start()) + 1) for m in HTTP_BLOCK.finditer(text)
    ]
    examples = []
    for request, response in zip(messages[::2], messages[1::2], strict=False):
        assert not request.start.startswith("HTTP/"), f"line {request.line}: a request expected"
        assert response.start.startswith("HTTP/"), f"line {response.line}: a response expected"
        examples.append(Example(request, response))
    assert len(messages) == 2 * len(examples), "an HTTP example without its response"
    return examples


@dataclass
class Replay:
    """The page's upload ids mapped to the ones the server gave."""

    ids: dict[str, str] = field(default_factory=dict)

    def real(self, text: str) -> str:
        return UPLOAD_ID.sub(lambda m: self.ids.get(m.group(0), m.group(0)), text)

    def send(self, client: Client, request: Message):
        method, target, _ = request.start.split(" ")
        extra = {}
        content_type = "application/octet-stream"
        for name, value in request.headers.items():
            if name.lower() == "content-type":
                content_type = value
            elif name.lower() == "host":
                extra["HTTP_HOST"] = value
            else:
                extra["HTTP_" + name.upper().replace("-", "_")] = self.real(value)
        body = self.real(request.body)
        if content_type.startswith("multipart/form-data"):
            body = body.replace("\n", "\r\n")  # a page's lines end in LF, multipart's in CRLF
        return client.generic(
            method,
            self.real(target),
            data=body.encode(),
            content_type=content_type,
            **extra,
        )

    def learn(self, shown: object, got: object) -> None:
        """A new upload id in an expected body stands for the one the server answered with."""
        if isinstance(shown, dict) and isinstance(got, dict):
            shown_id, got_id = shown.get("upload_id"), got.get("upload_id")
            if isinstance(shown_id, str) and isinstance(got_id, str) and shown_id not in self.ids:
                self.ids[shown_id] = got_id

    def learn_location(self, shown: str, got: str | None) -> None:
        """A new upload id in a Location header stands for the one the server answered with."""
        shown_id, got_id = UPLOAD_ID.search(shown), UPLOAD_ID.search(got or "")
        if shown_id and got_id and shown_id.group(0) not in self.ids:
            self.ids[shown_id.group(0)] = got_id.group(0)

    def compare(self, shown: object, got: object, where: str) -> None:
        if shown == ANY:
            return
        if isinstance(shown, dict):
            assert isinstance(got, dict), f"{where}: {got!r} is not an object"
            assert list(got) == list(shown), (
                f"{where}: keys {list(got)}, the page shows {list(shown)}"
            )
            for key, value in shown.items():
                if key in TIMES and isinstance(value, str):
                    assert ISO_TIME.match(str(got[key])), (
                        f"{where}.{key}: {got[key]!r} is not a time"
                    )
                else:
                    self.compare(value, got[key], f"{where}.{key}")
            return
        if isinstance(shown, str):
            shown = self.real(shown)
        assert got == shown, f"{where}: the server answered {got!r}, the page shows {shown!r}"


@pytest.fixture
def docs_site(chunky):
    chunky.MEDIA_URL = "/media/"
    return chunky


def replay(text: str, name: str) -> None:
    """Send each example's request in order; assert the answer is the one the page shows."""
    examples = parse_examples(text)
    assert examples, f"{name} has no HTTP examples"
    state, client = Replay(), Client()
    for example in examples:
        where = f"{name}:{example.response.line}"
        response = state.send(client, example.request)
        status = int(example.response.start.split(" ")[1])
        assert response.status_code == status, (
            f"{where}: {response.status_code} {response.content!r}"
        )
        for header, value in example.response.headers.items():
            if header == "Location":
                state.learn_location(value, response.get(header))
            if value == ANY:
                assert response.get(header) is not None, f"{where}: no {header}"
                continue
            if header in TIME_HEADERS:
                assert HTTP_DATE.match(response.get(header) or ""), (
                    f"{where}: {header}: {response.get(header)!r} is not an HTTP-date"
                )
                continue
            assert response.get(header) == state.real(value), (
                f"{where}: {header}: {response.get(header)!r}"
            )
        if example.response.body.strip():
            shown, got = json.loads(example.response.body), json.loads(response.content)
            state.learn(shown, got)
            state.compare(shown, got, where)
        else:
            assert not response.content, f"{where}: the page shows no body"


@pytest.mark.parametrize("page", PROTOCOL_PAGES, ids=lambda p: p.stem)
def test_protocol_examples_are_what_the_server_answers(docs_site, page):
    replay(page.read_text(), page.name)


@pytest.mark.parametrize(
    "good, bad",
    [
        ('"offset": 5,', '"offset": 6,'),  # a value
        ('"size": 11, "status": "processing"', '"status": "processing"'),  # a key
        ("HTTP/1.1 404 Not Found", "HTTP/1.1 410 Gone"),  # a status
        ("\nCache-Control: no-store", "\nCache-Control: max-age=60"),  # a header
    ],
)
def test_a_drifted_example_fails(docs_site, good, bad):
    text = (DOCS / "protocols" / "chunky.md").read_text()
    assert good in text
    with pytest.raises(AssertionError):
        replay(text.replace(good, bad, 1), "drifted")


@pytest.mark.parametrize(
    "good, bad",
    [
        ("Upload-Offset: 5\nUpload-Length: 11", "Upload-Offset: 6\nUpload-Length: 11"),  # a header
        ('"expected-offset": 5,', '"expected-offset": 3,'),  # a problem member
        ("HTTP/1.1 201 Created\nLocation", "HTTP/1.1 200 OK\nLocation"),  # a status
        ("Upload-Limit: …", "Upload-Limit: min-size=0"),  # a header shown as any value
        ("HTTP/1.1 204 No Content\nUpload-Limit", "HTTP/1.1 204 No Content\nUpload-Length"),
    ],
)
def test_a_drifted_rufh_example_fails(docs_site, good, bad):
    text = (DOCS / "protocols" / "rufh.md").read_text()
    assert good in text
    with pytest.raises(AssertionError):
        replay(text.replace(good, bad, 1), "drifted")


# -- the generated references -----------------------------------------------------------------


@pytest.mark.parametrize("part", ["settings", "error-classes", "checks"])
def test_generated_part_is_current(part):
    generator = load_generator()
    path, old, new = generator.rendered_page(part)
    assert old == new, f"{path.name} is stale: run python docs/generate.py"


def test_every_setting_has_a_docstring():
    assert load_generator().missing_docstrings() == []


def test_every_setting_is_on_the_page():
    generator = load_generator()
    page = (DOCS / "reference" / "settings.md").read_text()
    names = [name for name, _ in generator.settings_properties()]
    assert len(names) > 20
    for name in names:
        assert f"## `CHUNKY_REDIS_{name}`" in page


def test_every_check_id_has_an_example():
    generator = load_generator()
    in_source = generator.check_ids_in_source()
    assert "chunky_redis.E001" in in_source and "chunky_redis.E009" in in_source
    assert in_source == set(generator.CHECK_EXAMPLES), (
        "add an example to CHECK_EXAMPLES in docs/generate.py"
    )
    page = (DOCS / "reference" / "checks.md").read_text()
    for check_id in in_source:
        assert f"## `{check_id}`" in page


def test_error_table_names_every_code_the_package_sends():
    generator = load_generator()
    page = (DOCS / "reference" / "errors.md").read_text()
    hand_written = page.split("## When each code is sent", 1)[1].split("\n## ", 1)[0]
    listed = set()
    for row in hand_written.splitlines():
        if row.startswith("| ") and not row.startswith("| condition"):
            listed |= set(re.findall(r"`([a-z_]+)`", row.rsplit("|", 2)[1]))
    codes = generator.all_error_codes()
    assert {"not_found", "offset_mismatch", "total_changed", "csrf_failed"} <= codes
    assert codes - listed == set(), "codes the table does not explain"
    assert listed - codes == set(), "codes the table names that the package never sends"


# -- the architecture diagram -----------------------------------------------------------------

# Plumbing every Django app has; the diagram names the modules that hold the design.
NOT_IN_DIAGRAM = {"__init__.py", "__main__.py", "apps.py"}


def test_layer_diagram_names_every_module_and_only_modules():
    """The diagram of the layers names each module of the package once it exists, and no other."""
    package = DOCS.parent / "chunky_redis"
    text = (DOCS / "architecture.md").read_text()
    diagram = text.split("## The layers", 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    named = set(re.findall(r"\b(\w+\.py)\b", diagram))
    modules = {
        path.name
        for path in package.rglob("*.py")
        if not ({"client", "management"} & set(path.relative_to(package).parts[:-1]))
    } - NOT_IN_DIAGRAM
    assert modules - named == set(), "modules the diagram of the layers leaves out"
    assert named - modules == set(), "the diagram names modules that do not exist"


def test_readme_links_to_pages_that_exist():
    """make docs checks the links between pages; this checks the README's, which it does not build."""
    readme = (DOCS.parent / "README.md").read_text()
    targets = re.findall(r"\]\(((?!https?:|#)[^)#]+)(?:#[^)]*)?\)", readme)
    assert any(t.startswith("docs/") for t in targets)
    missing = [t for t in targets if not (DOCS.parent / t).exists()]
    assert missing == []
