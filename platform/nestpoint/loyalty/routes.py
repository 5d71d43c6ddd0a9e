"""HTTP routes of the loyalty programme's configuration."""

from __future__ import annotations

from litestar import Controller, get, put
from litestar.params import JSONBody

from nestpoint.api.deps import Db, hq_only, requires
from nestpoint.api.problems import problems
from nestpoint.loyalty import service
from nestpoint.loyalty.schemas import ProgramRead, ProgramSpec


def _read(program: service.Program) -> ProgramRead:
    return ProgramRead(version=program.version, **service.to_spec(program).model_dump())


class LoyaltyController(Controller):
    path = "/loyalty/program"
    tags = ["loyalty"]

    @get(
        "/",
        guards=[requires("loyalty:read")],
        responses=problems(),
        summary="The points policy, earn rules and tier ladder",
        operation_id="getProgram",
        description="Needs `loyalty:read`. Until HQ sets a programme, the defaults are answered.",
    )
    async def get_program(self, db: Db) -> ProgramRead:
        return _read(await service.load_program(db))

    @put(
        "/",
        guards=[requires("loyalty:write"), hq_only],
        responses=problems(422),
        summary="Replace the programme (idempotent: the same body changes nothing)",
        operation_id="replaceProgram",
        description=(
            "HQ key with `loyalty:write`. The `version` moves only on a real change; removing a "
            "tier moves its members at once to the nearest remaining tier below."
        ),
    )
    async def put_program(self, db: Db, data: JSONBody[ProgramSpec]) -> ProgramRead:
        program, _ = await service.put_program(db, data)
        return _read(program)
