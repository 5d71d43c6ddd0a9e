"""Every message of the console's templates and pages has a Simplified Chinese
translation, and both catalogues compile."""

from __future__ import annotations

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from nestpoint.console import web

METHODS = [("**/templates/**.html", "jinja2"), ("**.py", "python")]
OPTIONS = {"**/templates/**.html": {"extensions": "jinja2.ext.i18n"}}


def msgids() -> set[str]:
    found: set[str] = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(web.HERE), METHODS, keywords={"_": None, "gettext": None}, options_map=OPTIONS
    ):
        found.add(message if isinstance(message, str) else message[0])
    return found


def catalogue(name: str) -> dict[str, str]:
    with (web.LOCALES / name / "LC_MESSAGES" / "messages.po").open("rb") as po:
        return {str(m.id): str(m.string) for m in read_po(po) if m.id}


def test_every_message_has_a_chinese_translation() -> None:
    wanted = msgids()
    assert len(wanted) > 100  # the extraction found the templates
    zh = catalogue("zh_CN")
    missing = sorted(m for m in wanted if not zh.get(m))
    assert missing == []
    assert sorted(wanted - set(catalogue("en"))) == []


def test_catalogues_compile_and_translate() -> None:
    assert web.translations("zh_CN").gettext("Sign in") == "登录"
    assert web.translations("en").gettext("Sign in") == "Sign in"
    assert web.catalogue_of("zh-CN") == "zh_CN"
    assert web.catalogue_of("en") == "en"
    assert web.catalogue_of(None) == "zh_CN"
