"""The console's router: every page module's handlers under ``/console``.

A page module (``pages``, and one per area that grows its own pages) holds handlers only;
this module gathers them, so page modules may share ``pages``' helpers without a cycle.
"""

from __future__ import annotations

from litestar import Router
from litestar.exceptions import HTTPException
from litestar.static_files import create_static_files_router

from nestpoint.console import export
from nestpoint.console.admin_pages import (
    plugin_chain_page,
    plugin_chain_set,
    plugin_secret_set,
    programme_change,
    store_change,
    store_page,
    stores_add,
)
from nestpoint.console.exports_pages import exports_file, exports_page, exports_row, exports_start
from nestpoint.console.insights_pages import analytics_page
from nestpoint.console.member_pages import member_page, revoke_app_sessions
from nestpoint.console.pages import (
    console_error,
    console_http_error,
    dashboard,
    home,
    keys_add,
    keys_revoke,
    login_page,
    member_search,
    plugin_store_page,
    plugin_store_set,
    plugins_page,
    programme_page,
    sign_in,
    sign_out,
    stores_page,
    switch_language,
    till,
    till_benefit,
    till_enrol,
    till_lookup,
    till_order,
    users_add,
    users_change,
    users_page,
)
from nestpoint.console.settlement_pages import (
    settlement_close,
    settlement_compute,
    settlement_confirm,
    settlement_month,
    settlement_page,
    settlement_rules,
)
from nestpoint.console.web import PREFIX, STATIC, ConsoleMiddleware
from nestpoint.errors import NestpointError

CONSOLE_ROUTER = Router(
    path=PREFIX,
    route_handlers=[
        login_page,
        sign_in,
        sign_out,
        switch_language,
        home,
        dashboard,
        analytics_page,
        settlement_page,
        settlement_compute,
        settlement_rules,
        settlement_month,
        settlement_confirm,
        settlement_close,
        member_search,
        member_page,
        revoke_app_sessions,
        till,
        till_lookup,
        till_enrol,
        till_order,
        till_benefit,
        users_page,
        users_add,
        users_change,
        programme_page,
        programme_change,
        plugins_page,
        plugin_store_page,
        plugin_store_set,
        stores_page,
        keys_add,
        keys_revoke,
        stores_add,
        store_page,
        store_change,
        plugin_chain_page,
        plugin_chain_set,
        plugin_secret_set,
        exports_page,
        exports_start,
        exports_row,
        exports_file,
        create_static_files_router(path="/static", directories=[STATIC]),
    ],
    middleware=[ConsoleMiddleware],
    before_request=export.remember_query,
    exception_handlers={NestpointError: console_error, HTTPException: console_http_error},
    include_in_schema=False,
)
