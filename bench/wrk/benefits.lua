-- GET /api/v1/members/{id}/benefits: a random existing member's benefits at the key's store.
package.path = os.getenv("BENCH_WRK_DIR") .. "/?.lua;" .. package.path
require("common")

function init(args)
  load_args(args)
  headers = {["Authorization"] = "Bearer " .. key}
end

function request()
  local n = math.random(#ids)
  return wrk.format("GET", "/api/v1/members/" .. ids[n] .. "/benefits", headers)
end
