-- GET /api/v1/members/lookup?phone=...: a random existing member's phone.
package.path = os.getenv("BENCH_WRK_DIR") .. "/?.lua;" .. package.path
require("common")

function init(args)
  load_args(args)
  headers = {["Authorization"] = "Bearer " .. key}
end

function request()
  local n = math.random(#ids)
  return wrk.format("GET", "/api/v1/members/lookup?phone=" .. phone_of(n), headers)
end
