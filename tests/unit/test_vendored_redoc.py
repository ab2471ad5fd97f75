"""The ReDoc bundle behind /docs is the pinned file (chatroom_server/vendor/redoc/README.md)."""

from __future__ import annotations

import hashlib
import re
import tomllib

from chatroom_server.web import openapi

from ..conftest import ROOT


def test_the_bundle_is_the_pinned_release_with_its_licences() -> None:
    bundle = (openapi.REDOC_DIR / "redoc.standalone.js").read_bytes()
    assert hashlib.sha256(bundle).hexdigest() == openapi.REDOC_SHA256
    assert (
        f'Version: "{openapi.REDOC_VERSION}"'
        in (openapi.REDOC_DIR / "redoc.standalone.js.LICENSE.txt").read_text()
    )
    assert "MIT License" in (openapi.REDOC_DIR / "LICENSE").read_text()
    readme = (openapi.REDOC_DIR / "README.md").read_text()
    assert openapi.REDOC_SHA256 in readme and f"redoc@{openapi.REDOC_VERSION}" in readme


def test_the_page_template_names_no_other_origin() -> None:
    page = (openapi.REDOC_DIR / "redoc.html").read_text()
    assert re.findall(r"(?:https?:)?//[\w.-]+", page) == []
    assert "__CDN_URL__" in page  # sanic-ext puts our own script's path there
    assert openapi.REDOC_SCRIPT.startswith("/docs/")


def test_the_vendored_files_are_package_data() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "vendor/redoc/*" in pyproject["tool"]["setuptools"]["package-data"]["chatroom_server"]
