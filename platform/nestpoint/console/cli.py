"""``nestpoint console``: the operator adds and lists a chain's console users.

Each command imports what it runs inside its function (``nestpoint --help`` starts without
the app), as the other commands do. HQ manages users through ``/api/v1/console-users``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

console_app = typer.Typer(
    help="The console's users (docs/console.md): add one, list them.", no_args_is_help=True
)

Tenant = Annotated[str, typer.Option(help="The chain's slug.")]


@console_app.command("add-user")
def add_user(
    tenant: Tenant,
    login: Annotated[str, typer.Argument(help="The user's login (lower case).")],
    role: Annotated[str, typer.Option(help="hq_admin, hq_analyst, store_manager or store_clerk.")],
    store: Annotated[
        str | None, typer.Option(help="The store's code, for a store role.", show_default=False)
    ] = None,
    locale: Annotated[
        str | None, typer.Option(help="zh-CN or en (unset: the chain's).", show_default=False)
    ] = None,
) -> None:
    """Add a user; prints the password made for them (shown this once)."""
    from nestpoint.console.schemas import ConsoleUserCreate
    from nestpoint.console.service import create_user
    from nestpoint.jobs.cli import run_in_tenant

    async def add(session: AsyncSession) -> str | None:
        data = ConsoleUserCreate.model_validate(
            {"login": login, "role": role, "store_code": store, "locale": locale}
        )
        _, password = await create_user(session, data)
        return password

    password = run_in_tenant(tenant, "nestpoint console", add)
    typer.echo(f"{login}\t{role}\t{store or '-'}\tpassword: {password}")


@console_app.command("list-users")
def list_users(tenant: Tenant) -> None:
    """The chain's console users: login, role, store, locale, state, last sign-in."""
    from nestpoint.console.service import list_users as listing
    from nestpoint.console.service import user_store_codes
    from nestpoint.jobs.cli import run_in_tenant

    async def read(session: AsyncSession) -> list[str]:
        codes = await user_store_codes(session)
        lines: list[str] = []
        cursor: str | None = None
        while True:
            page = await listing(session, cursor=cursor, limit=200)
            for u in page.items:
                state = "disabled" if u.disabled_at else "active"
                last = u.last_login_at.isoformat(timespec="minutes") if u.last_login_at else "-"
                store = codes.get(u.store_id, "-") if u.store_id else "-"
                lines.append(f"{u.login}\t{u.role}\t{store}\t{u.locale or '-'}\t{state}\t{last}")
            cursor = page.next_cursor
            if cursor is None:
                return lines

    for line in run_in_tenant(tenant, "nestpoint console", read):
        typer.echo(line)
