"""Sphinx configuration for the chunky_redis documentation (``make docs`` builds it).

The pages are Markdown (MyST), so that they read the same on a Git host as in the built site,
and so that prose moves between the README and the docs without conversion. Everything else
about the tool lives in pyproject.toml's ``docs`` dependency group and the Makefile.
"""

from __future__ import annotations

project = "chunky_redis"
author = "the chunky_redis authors"
copyright = "the chunky_redis authors"

extensions = ["myst_parser"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "README.md"]

# Anchors for headings down to ###, slugged as Git hosts slug them, so that a link such as
# settings.md#chunky_redis_fsync works both in the built site and when reading the file online.
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]
# Links to files outside docs/ (the Procfile, deploy/...) are links to the repository, not pages.
myst_url_schemes = ["http", "https", "mailto"]

# Nothing is fetched at build or view time: the machine that builds the docs may have no internet.
html_theme = "furo"
html_title = "chunky_redis"
html_static_path: list[str] = []
# The HTTP examples of the protocol reference are plain text to the highlighter's lexer when it
# fails on a placeholder body; a failed highlight would otherwise be a warning (an error under -W).
highlight_language = "none"
