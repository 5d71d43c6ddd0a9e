-- POST /api/v1/coupons/check: what a random member's coupons pay on a basket of two lines
-- (two different items of order.lua's catalogue, quantity 1-2, the feeding ones at the member
-- price, as the order will give them). The members from `first` (argument 6) on hold the
-- three coupons of the check's templates and no others (bench/seed.py).
package.path = os.getenv("BENCH_WRK_DIR") .. "/?.lua;" .. package.path
require("common")
require("order") -- the catalogue and its lines

function init(args)
  load_args(args)
  first = tonumber(args[6] or "1")
  headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key}
end

function request()
  local n = first + math.random(#ids - first + 1) - 1
  local a = math.random(#catalogue)
  local b = math.random(#catalogue - 1)
  if b >= a then b = b + 1 end
  local one = line_json(catalogue[a], math.random(2))
  local two = line_json(catalogue[b], math.random(2))
  local body = string.format('{"member_id": "%s", "lines": [%s, %s]}', ids[n], one, two)
  return wrk.format("POST", "/api/v1/coupons/check", headers, body)
end
