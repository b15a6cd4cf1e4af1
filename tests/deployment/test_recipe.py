"""deploy/nginx/realtime.conf: the file docs/deployment.md shows, complete, and valid nginx."""

from __future__ import annotations

import re

import pytest

from realtime.testing.services import ServiceError, nginx_server

from .recipe import NGINX_RECIPE, ROOT, nginx_site, render


def docs_block() -> str:
    text = (ROOT / "docs" / "deployment.md").read_text()
    blocks = re.findall(r"```nginx\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 1, "docs/deployment.md shows the nginx recipe once"
    return blocks[0]


def test_the_docs_show_the_file_the_drill_runs() -> None:
    assert docs_block() == NGINX_RECIPE.read_text()


def test_it_renders_with_every_placeholder_filled() -> None:
    site = nginx_site(8000, ["10.0.0.1:8080", "10.0.0.2:8080"])
    assert "${" not in site
    assert "listen 127.0.0.1:8000;" in site
    assert "server 10.0.0.1:8080 max_fails=0;" in site
    # nginx's own variables are left for nginx, as envsubst with a list of names leaves them.
    assert "$http_upgrade" in site and "$remote_addr" in site


def test_a_placeholder_without_a_value_is_an_error() -> None:
    with pytest.raises(KeyError, match="REALTIME_GATEWAY_2"):
        nginx_site(8000, ["10.0.0.1:8080"])
    assert render("a ${X} $y", {"X": "1"}) == "a 1 $y"


@pytest.mark.integration
def test_nginx_accepts_it() -> None:
    with nginx_server(lambda port: nginx_site(port, ["127.0.0.1:9", "127.0.0.1:9"])) as lb:
        assert "syntax is ok" in lb.check()
        lb.write_site(lambda port: nginx_site(port, ["127.0.0.1:9", "127.0.0.1:9"]) + "oops;\n")
        with pytest.raises(ServiceError, match="oops"):
            lb.check()
